from __future__ import annotations

from flask import current_app, jsonify, render_template, request

from idp.core import accounts
from idp.core.policy import Verdict
from idp.extensions import limiter
from idp.http import authflow
from idp.recovery import bp

#: The live check runs zxcvbn (and, last, argon2 history comparisons): bounded per client address.
CHECK_LIMIT = "30 per minute;300 per hour"


@bp.route("/reset")
def reset():
    """Until self-service reset by e-mail exists (issue 5): who resets passwords, and how."""
    return render_template("recovery/help.html", policy=current_app.extensions["idp.policy"])


def verdict_json(verdict: Verdict) -> dict:
    return {"ok": verdict.ok, "score": verdict.score, "strength": verdict.strength,
            "rules": [{"code": r.code, "label": r.label, "ok": r.ok} for r in verdict.rules],
            "violations": [str(v.message) for v in verdict.violations]}


@bp.route("/check", methods=["POST"])
@limiter.limit(CHECK_LIMIT)
def check():
    """The server's own verdict on a candidate password, for the checklist and meter on password forms:
    the page never calls "strong" what the server would refuse."""
    account = authflow.current_person(request.args.get("for", "account"))
    if account is None:
        return jsonify({"error": "no_person"}), 401
    data = request.get_json(silent=True) or request.form
    password = str(data.get("password", ""))
    verdict = accounts.evaluate_password(account, password, current_app.extensions["idp.policy"])
    return jsonify(verdict_json(verdict))
