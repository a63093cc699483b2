"""KMS transactions: several operations in one ``transaction`` request, one round trip.

Later operations refer to the results of earlier ones as ``newref:N`` (kurento-protocol.md §2): KMS
replaces that string, anywhere in an operation's params, by the ``value`` of operation N, runs the
operations in order and stops at the first that fails. Nothing is rolled back: what ran before the
failure exists, and the caller is told which results those were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from kurento import jsonrpc
from kurento.exceptions import KurentoError
from kurento.objects import MediaObject

if TYPE_CHECKING:
    from kurento.client import EventCallback, KurentoClient

ObjectT = TypeVar("ObjectT", bound=MediaObject)
Target: TypeAlias = "MediaObject | str | NewRef"


class NewRef:
    """The future result of one operation of a transaction; sent as ``newref:<index>``."""

    __slots__ = ("index", "transaction")

    def __init__(self, transaction: Transaction, index: int) -> None:
        self.transaction = transaction
        self.index = index

    def __str__(self) -> str:
        return f"newref:{self.index}"

    def __repr__(self) -> str:
        return f"<NewRef {self.index}>"


@dataclass
class Subscription:
    """A subscribe operation with a local callback, routed once the target's id is known."""

    op_index: int
    target: str | NewRef
    event_type: str
    callback: EventCallback


class Transaction:
    """Operations collected locally and sent by ``commit()`` as one ``transaction`` request.

    Targets and parameter values may be proxies, ids, or NewRefs of earlier operations of this same
    transaction. Single use: after ``commit()``, ``value()`` and ``resolve()`` read the results.
    """

    def __init__(self, client: KurentoClient) -> None:
        self.client = client
        self._operations: list[dict[str, Any]] = []
        self._subscriptions: list[Subscription] = []
        self._values: list[Any] | None = None
        self._committing = False

    def __len__(self) -> int:
        return len(self._operations)

    def create(self, type_name: str, **ctor_params: Any) -> NewRef:
        """``create`` of ``type_name``; snake_case parameter names are converted to camelCase."""
        params = {jsonrpc.to_camel(k): self._wire(v) for k, v in ctor_params.items()}
        return self._add("create", {"type": type_name, "constructorParams": params})

    def invoke(self, target: Target, operation: str, **params: Any) -> NewRef:
        """``invoke`` of ``operation`` (camelCase, e.g. ``processOffer``); its NewRef stands for the return value."""
        request: dict[str, Any] = {"object": self._wire(target), "operation": operation}
        if params:
            request["operationParams"] = {jsonrpc.to_camel(k): self._wire(v) for k, v in params.items()}
        return self._add("invoke", request)

    def subscribe(self, target: Target, event_type: str, callback: EventCallback | None = None) -> NewRef:
        """``subscribe``; with ``callback``, the events are routed to it from the commit on (none lost).

        The NewRef stands for the subscription id.
        """
        ref = self._add("subscribe", {"object": self._wire(target), "type": event_type})
        if callback is not None:
            routed = target if isinstance(target, NewRef) else self._wire(target)
            self._subscriptions.append(Subscription(ref.index, routed, event_type, callback))
        return ref

    def release(self, target: Target) -> NewRef:
        return self._add("release", {"object": self._wire(target)})

    def commit(self, timeout: float | None = None) -> list[Any]:
        """Send every operation in one round trip; returns each operation's result ``value``.

        A failing operation raises its KurentoError (the class a single request would raise) with
        ``failed_index`` and ``completed`` (the values of the operations before it) set; callbacks
        of its subscriptions are not routed. Connection loss and timeouts raise KurentoUnavailable.
        """
        if self._committing:
            raise RuntimeError("a transaction is committed once")
        self._committing = True
        if not self._operations:
            self._values = []
            return []
        responses = self.client._commit_transaction(self._operations, self._subscriptions, timeout)
        values, failure = outcome(responses, len(self._operations))
        if failure is not None:
            raise failure
        self._values = values
        return list(values)

    def value(self, ref: NewRef) -> Any:
        """The result value of the operation ``ref`` stands for (after a successful commit)."""
        self._check_own(ref)
        if self._values is None:
            raise RuntimeError("the transaction is not committed")
        return self._values[ref.index]

    def resolve(self, ref: NewRef, cls: type[ObjectT]) -> ObjectT:
        """A ``cls`` proxy for the object ``ref`` created (or returned)."""
        value = self.value(ref)
        if not isinstance(value, str):
            raise TypeError(f"operation {ref.index} returned {value!r}, not an object id")
        return cls(self.client, value)

    # -- internals ---------------------------------------------------------------------------

    def _add(self, method: str, params: dict[str, Any]) -> NewRef:
        if self._committing:
            raise RuntimeError("the transaction is already committed")
        index = len(self._operations)
        self._operations.append({"id": index, "jsonrpc": jsonrpc.JSONRPC_VERSION, "method": method, "params": params})
        return NewRef(self, index)

    def _wire(self, value: Any) -> Any:
        if isinstance(value, NewRef):
            self._check_own(value)
            return str(value)
        if isinstance(value, MediaObject):
            return value.id
        if isinstance(value, dict):
            return {k: self._wire(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._wire(v) for v in value]
        return value

    def _check_own(self, ref: NewRef) -> None:
        if ref.transaction is not self:
            raise ValueError(f"{ref!r} belongs to another transaction")


def outcome(responses: list[dict[str, Any]], expected: int) -> tuple[list[Any], KurentoError | None]:
    """The values of the operations that succeeded, and the error of the one that failed, if any."""
    values: list[Any] = []
    for index, response in enumerate(responses):
        error = response.get("error") if isinstance(response, dict) else {"message": "malformed response"}
        if error is not None:
            failure = jsonrpc.error_from_response(error if isinstance(error, dict) else {"message": str(error)})
            failure.failed_index, failure.completed = index, values
            return values, failure
        result = response.get("result")
        values.append(result.get("value") if isinstance(result, dict) else result)
    if len(values) < expected:
        failure = KurentoError(None, f"transaction stopped after {len(values)} of {expected} operations")
        failure.failed_index, failure.completed = len(values), values
        return values, failure
    return values, None
