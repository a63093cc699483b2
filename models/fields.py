"""A MongoEngine field that stores a Kurento object by media server and id.

Stored as the string "<kms url>#<object id>" (flat, indexable, and safe on the nx-27017
stand-in); read back as a live proxy of the process's pooled client for that server, so a
worker that never saw the object can still drive it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mongoengine.base import BaseField

if TYPE_CHECKING:
    from kurento import MediaObject

SEPARATOR = "#"


class _Located(Protocol):
    @property
    def url(self) -> str: ...


class KurentoProxy(Protocol):
    """Anything with .client.url and .id: a kurento proxy (kurento.MediaObject) or a stand-in."""

    @property
    def client(self) -> _Located: ...

    @property
    def id(self) -> str: ...


@dataclass(frozen=True)
class KurentoRef:
    kms_url: str
    object_id: str

    def encode(self) -> str:
        return f"{self.kms_url}{SEPARATOR}{self.object_id}"

    @classmethod
    def decode(cls, stored: str) -> KurentoRef:
        kms_url, _, object_id = stored.partition(SEPARATOR)
        if not object_id:
            raise ValueError(f"not a stored Kurento reference: {stored!r}")
        return cls(kms_url, object_id)

    @property
    def type_name(self) -> str:
        """Kurento ids end with `_kurento.<Type>`; the proxy class follows from it."""
        return self.object_id.rsplit("_kurento.", 1)[-1]

    def proxy(self) -> MediaObject:
        import kurento

        cls = getattr(kurento, self.type_name, None) or kurento.MediaObject
        return kurento.get_client(self.kms_url).proxy(self.object_id, cls)


def ref_of(value: KurentoRef | KurentoProxy | str | None) -> KurentoRef | None:
    """Accepts a KurentoRef, a proxy (anything with .client.url and .id) or a stored string."""
    if value is None or isinstance(value, KurentoRef):
        return value
    if isinstance(value, str):
        return KurentoRef.decode(value)
    return KurentoRef(value.client.url, value.id)


# MongoEngine has no types and hands these methods whatever was assigned or queried, hence Any.
class KurentoObjectField(BaseField):
    def to_mongo(self, value: Any) -> str | None:
        ref = ref_of(value)
        return None if ref is None else ref.encode()

    def to_python(self, value: Any) -> Any:
        if value is None or not isinstance(value, str):
            return value
        return KurentoRef.decode(value).proxy()

    def prepare_query_value(self, op: str, value: Any) -> str | None:
        return self.to_mongo(value)

    def validate(self, value: Any) -> None:
        try:
            ref_of(value)
        except (ValueError, AttributeError):
            self.error("expected a Kurento object or reference")
