"""`idp demo`: a throw-away instance with demo people, the IdP, sample relying apps and a mail viewer
(run.py). The sample apps (usosweb.py, elearning.py) and the mail viewer (mailview.py) talk to the IdP only
over HTTP and SMTP, as other people's software would. people.csv and services.toml also serve `make run`.
"""
