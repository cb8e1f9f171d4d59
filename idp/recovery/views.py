from __future__ import annotations

from flask import current_app, render_template

from idp.recovery import bp


@bp.route("/reset")
def reset():
    """Until self-service reset by e-mail exists (issue 5): who resets passwords, and how."""
    return render_template("recovery/help.html", policy=current_app.extensions["idp.policy"])
