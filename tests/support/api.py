"""A small client of the REST contract, as a frontend would use it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import requests


@dataclass
class Member:
    api: Api
    session_id: str
    participant_id: str
    token: str
    after: int = 0
    inbox: list[dict] = field(default_factory=list)

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def base(self) -> str:
        return f"{self.api.base}/api/v1/sessions/{self.session_id}/participants/{self.participant_id}"

    def offer(self, sdp: str, stream: str = "publish") -> str:
        response = self.api.http.post(f"{self.base}/offers", json={"stream": stream, "sdp": sdp}, headers=self.headers)
        assert response.status_code == 202, response.text
        return response.json()["request_id"]

    def candidates(self, stream: str, candidates: list[dict]) -> requests.Response:
        return self.api.http.post(
            f"{self.base}/candidates", json={"stream": stream, "candidates": candidates}, headers=self.headers
        )

    def poll(self, wait: float = 5.0, limit: int = 100) -> list[dict]:
        response = self.api.http.get(
            f"{self.base}/messages",
            params={"after": self.after, "wait": wait, "limit": limit},
            headers=self.headers,
            timeout=wait + 30,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        self.after = body["last_seq"]
        self.inbox.extend(body["messages"])
        return body["messages"]

    def wait_for(self, predicate, timeout: float = 20.0) -> dict:
        """The first message (already received or arriving) that satisfies predicate."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for message in self.inbox[seen:]:
                if predicate(message):
                    return message
            seen = len(self.inbox)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching message within {timeout} s; got {self.inbox}")
            self.poll(wait=min(remaining, 5.0))

    def wait_type(self, type_: str, timeout: float = 20.0, **fields) -> dict:
        return self.wait_for(lambda m: m["type"] == type_ and all(m.get(k) == v for k, v in fields.items()), timeout)

    def send(self, payload: dict, to: str | None = None) -> requests.Response:
        body = {"payload": payload} | ({"to": to} if to else {})
        return self.api.http.post(
            f"{self.api.base}/api/v1/sessions/{self.session_id}/messages", json=body, headers=self.headers
        )

    def leave(self) -> requests.Response:
        return self.api.http.delete(self.base, headers=self.headers)


class Api:
    def __init__(self, base: str, api_key: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.http = requests.Session()
        self.api_key = api_key

    @property
    def key_headers(self) -> dict:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def create_session(self, **body) -> dict:
        response = self.http.post(f"{self.base}/api/v1/sessions", json=body, headers=self.key_headers)
        assert response.status_code == 201, response.text
        return response.json()

    def join(self, session: dict, display_name: str = "alice") -> Member:
        response = self.http.post(
            f"{self.base}/api/v1/sessions/{session['session_id']}/participants",
            json={"display_name": display_name, "join_token": session["join_token"]},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return Member(self, session["session_id"], body["participant_id"], body["token"])
