"""MongoEngine documents and the atomic operations the service performs on them."""

from models import streams
from models.connection import bound_to, connect_db, current_db, database_alias, ping_db
from models.endpoint import PUBLISH, Endpoint
from models.fields import KurentoObjectField, KurentoRef
from models.idempotency import IdempotencyRecord
from models.join_grant import JoinGrant
from models.kms_session import KmsSession
from models.lease import Lease
from models.media_server import MediaServer
from models.outbox import OutboxMessage
from models.participant import Participant, ParticipantRole, ParticipantState
from models.recording import Recording, RecordingState
from models.session import Session, SessionState
from models.task_start import TaskStart

__all__ = [
    "PUBLISH",
    "Endpoint",
    "IdempotencyRecord",
    "JoinGrant",
    "KmsSession",
    "KurentoObjectField",
    "KurentoRef",
    "Lease",
    "MediaServer",
    "OutboxMessage",
    "Participant",
    "ParticipantRole",
    "ParticipantState",
    "Recording",
    "RecordingState",
    "Session",
    "SessionState",
    "TaskStart",
    "bound_to",
    "connect_db",
    "current_db",
    "database_alias",
    "ping_db",
    "streams",
]
