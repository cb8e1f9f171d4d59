# Two commands on a fresh machine:  `make run`  (service + demo data)  and  `make test`.
VENV    ?= .venv
PORT    ?= 8000
PYTHON  ?= python3
IDP      = $(VENV)/bin/idp

.PHONY: install run demo-data test test-postgres browser dovecot apache axe translations bench lint

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Initialise instance/ (SQLite), load the demo people and apps, serve on http://127.0.0.1:$(PORT).
run: install demo-data
	IDP_BASE_URL=$${IDP_BASE_URL:-http://127.0.0.1:$(PORT)} $(IDP) serve --host 127.0.0.1 --port $(PORT)

demo-data: install
	$(IDP) init
	$(IDP) users import idp/demo/people.csv
	$(IDP) services load idp/demo/services.toml
	@echo 'Korsarz-Wisła-1987-Tramwaj' | $(IDP) users set-password 12345
	@echo 'Pociąg-Tatry-Sowa-Klucz-7' | $(IDP) users set-password T0042
	@echo 'Tymczasowe-Morze-Latarnia-42' | $(IDP) users set-password --temporary 12347
	@echo 'Biurko-Kalendarz-Herbata-58' | $(IDP) users set-password P0007
	$(IDP) staff grant P0007 helpdesk
	@echo "Demo people (login with any of their e-mail addresses or the album number):"
	@echo "  lukasz.zolkiewski@student.example.edu.pl  Korsarz-Wisła-1987-Tramwaj"
	@echo "  anna.kowalska@example.edu.pl              Pociąg-Tatry-Sowa-Klucz-7"
	@echo "  olena.shevchenko@student.example.edu.pl   Tymczasowe-Morze-Latarnia-42 (temporary: change at first login)"
	@echo "  marta.nowicka@example.edu.pl              Biurko-Kalendarz-Herbata-58 (helpdesk: /helpdesk, enrols a second factor)"

# The demo (docs/demo.md): a throw-away instance, the IdP, two sample apps and a mail viewer on ports
# $(PORT)..$(PORT)+4; prints URLs and passwords; Ctrl-C stops it all.
.PHONY: demo
demo: install
	$(IDP) demo --port $(PORT)

# The whole suite (unit, HTTP, end-to-end with a real `idp serve` and headless Chromium) on SQLite.
# IDP_TEST_DATABASE_URL=postgresql://127.0.0.1/test runs it on PostgreSQL instead.
test: install browser dovecot apache axe
	$(VENV)/bin/pytest

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Dovecot (IMAP) for tests/mail: real mail-server authentication against the IdP (docs/mail.md).
dovecot:
	@command -v dovecot >/dev/null 2>&1 || { \
	  echo "installing Debian dovecot-imapd for the mail tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null; }

# Apache httpd with mod_auth_cas and mod_auth_openidc for tests/interop (docs/interop.md).
apache:
	@{ test -x /usr/sbin/apache2 && test -e /usr/lib/apache2/modules/mod_auth_cas.so \
	   && test -e /usr/lib/apache2/modules/mod_auth_openidc.so; } || { \
	  echo "installing Debian apache2, libapache2-mod-auth-cas, libapache2-mod-auth-openidc for the interop tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    apache2 libapache2-mod-auth-cas libapache2-mod-auth-openidc >/dev/null; }

# npm for the accessibility checks (tests/journeys install axe-core from the npm registry with it).
axe:
	@command -v npm >/dev/null 2>&1 || { \
	  echo "installing Debian npm for the accessibility checks"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }

translations: install
	$(VENV)/bin/pybabel extract -F babel.cfg -k lazy_gettext -k _l -k lazy_ngettext:1,2 -k _ln:1,2 -o idp/translations/messages.pot .
	$(VENV)/bin/pybabel update -i idp/translations/messages.pot -d idp/translations --no-fuzzy-matching
	$(VENV)/bin/pybabel compile -d idp/translations

# Throughput and latency against references of the same server, on SQLite and PostgreSQL + Redis, 1 and 2
# nodes (~20 min; BENCH_ARGS=--quick ~6 min). Prints tables and writes bench/results/latest.md.
bench: install
	$(VENV)/bin/pip install -q -e '.[bench]'
	$(VENV)/bin/python bench/run.py $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check .
