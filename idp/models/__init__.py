"""SQLAlchemy models, one module per aggregate. Importing this package registers every table."""
from idp.models.account import Account, Identifier, PasswordHistory
from idp.models.audit import AuditEvent
from idp.models.federation import PendingLink, UpstreamIdentity
from idp.models.mail import OutboxMessage
from idp.models.oidc import AuthorizationCode, Consent, OAuthToken
from idp.models.recovery import ResetRequest
from idp.models.service import Service
from idp.models.sso import SessionParticipant, SsoSession, Ticket
from idp.models.staff import (
           ApiToken,
           AssistedRecovery,
           RecoveryCode,
           StaffRole,
           TotpSecret,
           WebAuthnCredential,
)
from idp.models.sync import ImportRun
from idp.models.throttle import ThrottleCounter

__all__ = ["Account", "Identifier", "PasswordHistory", "AuditEvent", "Service", "SsoSession", "Ticket", "SessionParticipant",
           "ImportRun", "AuthorizationCode", "OAuthToken", "Consent", "OutboxMessage", "ResetRequest",
           "UpstreamIdentity", "PendingLink", "StaffRole", "TotpSecret", "RecoveryCode", "WebAuthnCredential",
           "AssistedRecovery", "ApiToken", "ThrottleCounter"]
