"""The refusals of the domain, each carrying the message the API answers with.

Five bases say what kind of refusal it is; `signaling_web.errors` turns them into HTTP in one
place, by base: Unauthorized 401, Forbidden 403, NotFound 404, Conflict 409, Invalid 422. The
subclasses name the case, so callers and tests can tell "closed" from "full" without parsing text.
"""

from __future__ import annotations


class DomainError(Exception):
    """A refusal the caller can act on. `message` is what the client reads; `errors` names the
    fields at fault ({field: [reasons]}), as request validation does."""

    message = "The request was refused."

    def __init__(self, message: str | None = None, errors: dict[str, list[str]] | None = None) -> None:
        self.message = message if message is not None else type(self).message
        self.errors = errors or {}
        super().__init__(self.message)


class Unauthorized(DomainError):
    """No valid credential for the operation."""


class Forbidden(DomainError):
    """A valid credential that does not allow this operation."""


class NotFound(DomainError):
    """What the request names does not exist (or is not part of the session it names)."""


class Conflict(DomainError):
    """The request is valid but the state of the session or participant refuses it."""


class Invalid(DomainError):
    """A field is valid on its own but not in this request."""


class SessionNotFound(NotFound):
    message = "No such session."


class SessionClosed(Conflict):
    message = "The session is closed."


class SessionFull(Conflict):
    def __init__(self, max_participants: int) -> None:
        super().__init__(f"The session is full ({max_participants} participants).")


class WrongJoinToken(Forbidden):
    message = "The join token does not match this session."


class ParticipantNotFound(NotFound):
    message = "No such participant in this session."


class ParticipantLeft(Conflict):
    message = "This participant has left the session."


class RecordingNotFound(NotFound):
    message = "No such recording in this session."


class NotPublishing(Conflict):
    """Recording a publication that is not being published."""

    def __init__(self, participant_id: str, name: str) -> None:
        super().__init__(f"Participant {participant_id} is not publishing {name!r}.")


class StreamNotFound(NotFound):
    """`stream` names no joined participant of the session."""

    def __init__(self, stream: str) -> None:
        super().__init__(f"No participant {stream} in this session.")


class RecipientNotFound(NotFound):
    """`to` names no joined participant of the session."""

    def __init__(self, participant_id: str) -> None:
        super().__init__(f"No participant {participant_id} in this session.")


class OwnStreamById(Invalid):
    """A participant named its own id as `stream`: its own media is the stream "publish"."""

    message = 'Use stream "publish" for your own media.'

    def __init__(self) -> None:
        super().__init__(errors={"stream": ["own participant id"]})


class BadStreamName(Invalid):
    """The name of a publication (after "publish:" or "<pid>:") does not match [a-z0-9_-]{1,32}."""

    message = "A publication name is 1 to 32 of a-z, 0-9, _ and -."

    def __init__(self, field: str = "stream") -> None:
        super().__init__(errors={field: [type(self).message]})


class TooManyPublications(Conflict):
    """A fifth publication of one participant (models.streams.MAX_PUBLICATIONS)."""

    def __init__(self, limit: int = 4) -> None:
        super().__init__(f"At most {limit} publications per participant; unpublish one first.")


class PublicationNotFound(NotFound):
    """The participant has no publication of that name."""

    def __init__(self, name: str = "screen") -> None:
        super().__init__(f"This participant has no publication named {name!r}.")


class JoinTokenUsed(Conflict):
    message = "This join token was already used; a minted join token admits one participant."


class JoinTokenExpired(Forbidden):
    message = "This join token has expired."


class SubscriberCannotPublish(Forbidden):
    message = "A subscriber receives only: it cannot publish."


class NotAModerator(Forbidden):
    message = "Only a moderator of this session (or an API key) may do this."
