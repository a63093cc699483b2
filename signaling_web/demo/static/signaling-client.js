/**
 * signaling-client.js: a reference browser client for the Kurento signaling service (REST API v1).
 *
 * One ES module, no dependencies, nothing to build: copy it into your frontend. It speaks only the
 * public REST contract:
 *
 *   - joins a session with its join token, then long-polls its own message queue
 *     (GET .../messages?after=<last seq processed>&wait=25), handles each batch in order and
 *     polls again; network errors back off (0.5 s doubling up to 10 s) and never lose a message,
 *     because the server deletes messages only once a later poll acknowledges them with `after`;
 *   - publishes a MediaStream on stream "publish" (its `main` publication; `publish(stream, 'screen')`
 *     publishes another, stream "publish:screen", at most 4) and subscribes to other publishers on
 *     stream "<their participant_id>" (or "<participant_id>:<name>"), one RTCPeerConnection per stream;
 *   - unpublishes one publication (`unpublish(name)`), mutes a publication for every subscriber
 *     (`mute(participantId, name, {audio, video})`: its own, or anyone's for a moderator) and keeps
 *     every publication's mute state from `streamMuted` (`mutedState(participantId, name)`);
 *   - trickles ICE both ways: local candidates are POSTed as they are gathered (batched a few ms),
 *     remote ones arrive as `iceCandidate` messages routed by `stream` (buffered until the answer
 *     is applied), and `iceGatheringDone` ends them;
 *   - subscribes automatically to everyone who publishes (the join answer's `publishing` flags,
 *     then `streamPublished`) and drops the subscription on `streamUnpublished`/`participantLeft`;
 *   - reconnects by itself (autoReconnect, default on): on `connectionFailed` it offers again on the
 *     failed stream only (a fresh peer connection); on `mediaServerLost` it rejoins (fresh media,
 *     same participant), republishes and resubscribes, retrying with backoff until its publication
 *     is answered again; `reconnecting`, `reconnected` and `reconnectFailed` tell the page, which
 *     can still call `rejoin()` itself (a manual fallback);
 *   - roles: joins with the session's shared join token (a publisher) or a single-use token your
 *     backend minted (SignalingClient.mintToken, with an API key) for a `publisher`, a `subscriber`
 *     (receives only: publish() refuses) or a `moderator`, who may remove(participantId) others
 *     and closeSession(), mute anyone's publication and record it (startRecording, stopRecording). A removed participant's client drains its queue and closes ('removed').
 *
 * Usage:
 *
 *   import { SignalingClient } from './signaling-client.js';
 *
 *   const created = await SignalingClient.createSession({ name: 'standup' });   // or get id + token by link
 *   const client = new SignalingClient();
 *   client.on('remoteStream', ({ participantId, mediaStream }) => attach(participantId, mediaStream));
 *   client.on('remoteStreamRemoved', ({ participantId }) => detach(participantId));
 *   client.on('message', (m) => showChat(m.from, m.payload));          // any message type by name
 *   client.on('mediaServerLost', () => offerRejoinButton(() => client.rejoin()));
 *   await client.join(created.session_id, created.join_token, 'Alice');
 *   // or, from a backend holding an API key: a single-use token with a role
 *   //   const { join_token } = await SignalingClient.mintToken({ apiKey, sessionId, role: 'moderator' });
 *   //   (both take `bandwidth: { maxVideoSendBandwidth, minVideoSendBandwidth, maxVideoRecvBandwidth }` in kbps)
 *   //   await client.join(sessionId, join_token, 'Alice', { metadata: { seat: 3 } });
 *   await client.publish(await navigator.mediaDevices.getUserMedia({ audio: true, video: true }));
 *   await client.send({ text: 'hello' });                                // broadcast to the session
 *   await client.leave();
 *
 * Events (client.on(type, handler) returns a function that removes the handler):
 *   every server message type (`sdpAnswer`, `iceCandidate`, `iceGatheringDone`, `participantJoined`,
 *   `participantLeft`, `streamPublished`, `streamUnpublished`, `streamMuted`, `recordingStarted`,
 *   `recordingStopped`, `connectionFailed`, `mediaServerLost`, `sessionClosed`, `message`, `error`) with the
 *   message as argument, after the client handled it (`recordings` then holds the session's recordings);
 *   `*` for every message; and the client's own:
 *   `remoteStream` {participantId, name, stream, mediaStream, pc}, `remoteStreamRemoved` {participantId, name, stream},
 *   `connectionState` {stream, state}, `pollError` {error, retryInMs}, `closed` {reason}
 *   (reason 'removed' when a moderator removed us),
 *   `reconnecting` {reason, stream?, attempt, inMs}, `reconnected` {reason, stream?, attempt},
 *   `reconnectFailed` {reason, stream?, error}.
 */

/**
 * Bandwidth limits in kbps, as createSession (the session's defaults) and mintToken (one participant's,
 * instead of the session's) take them: { maxVideoSendBandwidth, minVideoSendBandwidth } on the endpoints
 * that send to a participant, { maxVideoRecvBandwidth } on those it publishes with; each omitted: unset.
 */
const BANDWIDTH_FIELDS = {
  maxVideoSendBandwidth: 'max_video_send_bandwidth',
  minVideoSendBandwidth: 'min_video_send_bandwidth',
  maxVideoRecvBandwidth: 'max_video_recv_bandwidth',
};
const bandwidthFields = (bandwidth = {}) => Object.fromEntries(
  Object.entries(BANDWIDTH_FIELDS).filter(([key]) => bandwidth[key] !== undefined).map(([key, field]) => [field, bandwidth[key]]),
);

export const PUBLISH = 'publish';
export const MAIN = 'main';

/** The stream of one of our own publications: "publish" for main, "publish:<name>" otherwise. */
export const publishStream = (name = MAIN) => (name === MAIN ? PUBLISH : `${PUBLISH}:${name}`);
/** The stream that receives a publisher's publication: "<pid>" for main, "<pid>:<name>" otherwise. */
export const subscriptionStream = (participantId, name = MAIN) => (name === MAIN ? participantId : `${participantId}:${name}`);

const POLL_WAIT_S = 25;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
const CANDIDATE_BATCH_MS = 10;
const REJOIN_SETTLE_MS = 5000;
// Automatic reconnection: the wait before each attempt, then give up (reconnectFailed).
const RECONNECT_DELAYS_MS = [0, 1000, 2000, 4000, 8000, 15000];
// How long an attempt waits for its publication's sdpAnswer before it counts as failed.
const RECONNECT_ANSWER_MS = 15000;

/** A non-2xx answer of the API: `status` and the service's error body (`code`, `message`, `errors`). */
export class SignalingError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.name = 'SignalingError';
    this.status = status;
    this.body = body;
  }
}

async function request(baseUrl, method, path, { body, headers = {}, signal, keepalive = false } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers }, signal, keepalive };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`${baseUrl}/api/v1${path}`, init);
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { message: text };
  }
  if (!response.ok) throw new SignalingError(response.status, parsed);
  return parsed;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** One RTCPeerConnection for one stream: our publication ("publish") or a subscription. */
class StreamLink {
  constructor(stream, pc) {
    this.stream = stream;
    this.pc = pc;
    this.requestId = null;
    this.remoteCandidates = []; // waiting for the answer
    this.remoteDone = false; // iceGatheringDone seen
    this.localCandidates = []; // waiting to be POSTed
    this.flushTimer = null;
    this.mediaStream = null;
    this.early = []; // sdpAnswer/error that came before our offer's request_id was known
    this.closed = false;
  }

  close() {
    this.closed = true;
    clearTimeout(this.flushTimer);
    this.pc.close();
  }
}

export class SignalingClient {
  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl]  Service root, e.g. "https://signaling.example.com"; "" = this origin.
   * @param {RTCIceServer[]} [options.iceServers]  STUN/TURN servers for the peer connections, used before the
   *   `ice_servers` the service hands out in its join and rejoin answers (ICE_SERVERS, TURN credentials).
   * @param {boolean} [options.autoSubscribe]  Subscribe to every publisher (default true).
   * @param {number} [options.pollWait]  Long-poll hold time in seconds (0 to 30, default 25).
   * @param {boolean} [options.autoReconnect]  Recover from `connectionFailed` and `mediaServerLost` by
   *   itself (default true); false leaves it to the page (`rejoin()`).
   */
  constructor({
    baseUrl = '', iceServers = [], autoSubscribe = true, pollWait = POLL_WAIT_S, autoReconnect = true,
  } = {}) {
    this.baseUrl = baseUrl.replace(/\/$/, '');
    this.iceServers = iceServers;
    /** The service's `ice_servers` (join answer, renewed by each rejoin answer: TURN credentials expire). */
    this.serviceIceServers = [];
    this.autoSubscribe = autoSubscribe;
    this.pollWait = pollWait;
    this.autoReconnect = autoReconnect;
    this._recovering = null; // the running automatic rejoin, if any
    this.sessionId = null;
    this.participantId = null;
    this.token = null;
    /** When `token` expires (a Date): join again after. */
    this.tokenExpiresAt = null;
    this.displayName = null;
    /** Our role: 'publisher', 'subscriber' (receives only) or 'moderator'. */
    this.role = null;
    /** Last message seq processed; sent as `after`. */
    this.lastSeq = 0;
    /** participant_id -> {participant_id, display_name, publishing, state, role, metadata}, others and ourselves. */
    this.participants = new Map();
    /** recording_id -> {recording_id, participant_id, name, state: 'recording'|'stopped', reason}, as announced. */
    this.recordings = new Map();
    /** The published local MediaStream of `main` (republished by rejoin). */
    this.localStream = null;
    /** publication name -> published local MediaStream, main included (all republished by rejoin). */
    this.localStreams = new Map();
    /** "<participant_id>:<name>" -> {audio, video}: true while the service does not forward that kind. */
    this.muted = new Map();
    this._links = new Map();
    this._handlers = new Map();
    this._waiters = new Set();
    this._polling = false;
    this._pollAbort = null;
    this._closeAfterHandling = null;
  }

  /** Creates a session: {session_id, join_token, name, state}. `apiKey` when the service requires keys. */
  static createSession({ baseUrl = '', apiKey = null, name = '', maxParticipants, bandwidth } = {}) {
    const body = { name, ...bandwidthFields(bandwidth) };
    if (maxParticipants !== undefined) body.max_participants = maxParticipants;
    const headers = apiKey ? { 'X-API-Key': apiKey } : {};
    return request(baseUrl.replace(/\/$/, ''), 'POST', '/sessions', { body, headers });
  }

  /**
   * Mints a single-use join token with a role (API key; for backends, or a trusted page such as the
   * demo's): resolves {join_token, role, expires_at}. `ttlS` 1 to 86400 (default 3600).
   */
  static mintToken({ baseUrl = '', apiKey, sessionId, role = 'publisher', displayName, metadata, ttlS, bandwidth } = {}) {
    const body = { role, ...bandwidthFields(bandwidth) };
    if (displayName !== undefined) body.display_name = displayName;
    if (metadata !== undefined) body.metadata = metadata;
    if (ttlS !== undefined) body.ttl_s = ttlS;
    return request(baseUrl.replace(/\/$/, ''), 'POST', `/sessions/${encodeURIComponent(sessionId)}/tokens`,
      { body, headers: { 'X-API-Key': apiKey } });
  }

  /** Rotates a session's shared join token (API key): resolves {join_token}; the old one is refused from then on. */
  static rotateJoinToken({ baseUrl = '', apiKey, sessionId } = {}) {
    return request(baseUrl.replace(/\/$/, ''), 'POST', `/sessions/${encodeURIComponent(sessionId)}/join-token`,
      { headers: { 'X-API-Key': apiKey } });
  }

  /**
   * Recording, for the application's backend (its API key) or a moderator: `startRecording` answers
   * {recording_id, state: "starting", participant_id, name, profile, uri}; everyone in the session then gets
   * `recordingStarted`, and `recordingStopped {recording_id, reason}` when it ends.
   * `profile`: "webm" (default), "mp4" or "webm-audio"; `name`: the publication, "main" by default.
   */
  static startRecording({ baseUrl = '', apiKey = null, sessionId, participantId, name = 'main', profile = 'webm' }) {
    const headers = apiKey ? { 'X-API-Key': apiKey } : {};
    const body = { participant_id: participantId, name, profile };
    return request(baseUrl.replace(/\/$/, ''), 'POST', `/sessions/${sessionId}/recordings`, { body, headers });
  }

  /** Asks for the end of a recording (202); it is `stopped` once the media server finished the file. */
  static stopRecording({ baseUrl = '', apiKey = null, sessionId, recordingId }) {
    const headers = apiKey ? { 'X-API-Key': apiKey } : {};
    return request(baseUrl.replace(/\/$/, ''), 'POST', `/sessions/${sessionId}/recordings/${recordingId}/stop`, { headers });
  }

  /** {recordings: [{recording_id, state, participant_id, name, profile, uri, started_at, stopped_at, reason}]}. */
  static listRecordings({ baseUrl = '', apiKey = null, sessionId }) {
    const headers = apiKey ? { 'X-API-Key': apiKey } : {};
    return request(baseUrl.replace(/\/$/, ''), 'GET', `/sessions/${sessionId}/recordings`, { headers });
  }

  /** stream ("publish" or a publisher's participant_id) -> RTCPeerConnection, for getStats() and UIs. */
  get peerConnections() {
    const result = new Map();
    for (const [stream, link] of this._links) result.set(stream, link.pc);
    return result;
  }

  // ------------------------------------------------------------------ events
  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    return () => this._handlers.get(type).delete(handler);
  }

  _emit(type, detail) {
    for (const handler of this._handlers.get(type) || []) {
      try {
        handler(detail);
      } catch (err) {
        console.error(`signaling: ${type} handler failed`, err);
      }
    }
  }

  /** Resolves with the first message matching predicate (or null after timeoutMs). */
  _waitFor(predicate, timeoutMs) {
    return new Promise((resolve) => {
      const waiter = { predicate, resolve };
      waiter.timer = setTimeout(() => {
        this._waiters.delete(waiter);
        resolve(null);
      }, timeoutMs);
      this._waiters.add(waiter);
    });
  }

  // ------------------------------------------------------------------ REST
  get _me() {
    return `/sessions/${encodeURIComponent(this.sessionId)}/participants/${encodeURIComponent(this.participantId)}`;
  }

  _call(method, path, body, { signal, keepalive } = {}) {
    return request(this.baseUrl, method, path, {
      body, signal, keepalive, headers: { Authorization: `Bearer ${this.token}` },
    });
  }

  /**
   * Joins a session and starts polling. Returns the join answer
   * {participant_id, token, role, token_expires_at, participants, ice_servers}. `joinToken` is the
   * session's shared token or a minted one (whose display name and metadata win; `displayName` may
   * then be omitted). `metadata`: a JSON object (at most 4 KiB) everyone sees with this participant.
   * With autoSubscribe, everyone already publishing is subscribed to right away.
   */
  async join(sessionId, joinToken, displayName, { metadata } = {}) {
    const body = { join_token: joinToken };
    if (displayName) body.display_name = displayName;
    if (metadata !== undefined) body.metadata = metadata;
    const joined = await request(this.baseUrl, 'POST', `/sessions/${encodeURIComponent(sessionId)}/participants`,
      { body });
    this.sessionId = sessionId;
    this.participantId = joined.participant_id;
    this.token = joined.token;
    this.role = joined.role || 'publisher';
    this.tokenExpiresAt = joined.token_expires_at ? new Date(joined.token_expires_at) : null;
    this.serviceIceServers = joined.ice_servers || [];
    const me = (joined.participants || []).find((p) => p.participant_id === joined.participant_id);
    this.displayName = me ? me.display_name : displayName;
    for (const p of joined.participants || []) this.participants.set(p.participant_id, { ...p });
    this._startPolling();
    if (this.autoSubscribe) this._subscribeToPublishers(joined.participants || []);
    return joined;
  }

  _subscribeToPublishers(participants) {
    for (const p of participants) {
      if (p.participant_id !== this.participantId && p.publishing && p.state !== 'left') {
        this.subscribe(p.participant_id).catch((err) => this._emit('error', { stream: p.participant_id, error: err }));
      }
    }
  }

  /**
   * Publishes a local MediaStream (its audio and video tracks, send-only) as publication `name` ("main", or
   * e.g. "screen": [a-z0-9_-]{1,32}). Publishing a name again re-offers it: its subscribers keep receiving
   * without doing anything. Resolves once the offer is posted. A subscriber cannot publish (403).
   */
  async publish(mediaStream, name = MAIN) {
    if (this.role === 'subscriber') throw new SignalingError(403, { message: 'A subscriber receives only: it cannot publish.' });
    if (name === MAIN) this.localStream = mediaStream;
    this.localStreams.set(name, mediaStream);
    const stream = publishStream(name);
    this._dropLink(stream);
    const pc = this._newPeerConnection();
    for (const track of mediaStream.getTracks()) {
      pc.addTransceiver(track, { direction: 'sendonly', streams: [mediaStream] });
    }
    return this._negotiate(new StreamLink(stream, pc));
  }

  /** Ends one of our publications: the service releases it and tells everyone (streamUnpublished). */
  async unpublish(name = MAIN) {
    await this._call('DELETE', `${this._me}/streams/${encodeURIComponent(name)}`);
    this.localStreams.delete(name);
    if (name === MAIN) this.localStream = null;
    this._dropLink(publishStream(name));
  }

  /**
   * Stops (true) or resumes (false) forwarding a kind of a publication to all its subscribers; a kind left
   * out stays as it is. Our own publications, or anyone's when we are a moderator. Everyone gets streamMuted.
   */
  mute(participantId, name = MAIN, { audio, video } = {}) {
    const body = {};
    if (audio !== undefined) body.audio = audio;
    if (video !== undefined) body.video = video;
    const path = `/sessions/${encodeURIComponent(this.sessionId)}/participants/${encodeURIComponent(participantId)}`;
    return this._call('POST', `${path}/streams/${encodeURIComponent(name)}/mute`, body);
  }

  /** {audio, video} of a publication as the last streamMuted said (both false when none came). */
  mutedState(participantId, name = MAIN) {
    return this.muted.get(`${participantId}:${name}`) || { audio: false, video: false };
  }

  /**
   * A moderator's recording of a publication (the same routes as the static helpers, with our token):
   * resolves {recording_id, state: "starting", ...}; `recordingStarted`/`recordingStopped` follow.
   */
  startRecording(participantId, name = MAIN, profile = 'webm') {
    return this._call('POST', `/sessions/${encodeURIComponent(this.sessionId)}/recordings`,
      { participant_id: participantId, name, profile });
  }

  /** A moderator's request to end a recording (202); `recordingStopped` says when the file is complete. */
  stopRecording(recordingId) {
    return this._call('POST',
      `/sessions/${encodeURIComponent(this.sessionId)}/recordings/${encodeURIComponent(recordingId)}/stop`);
  }

  /** Receives a publisher's publication (audio and video). Emits `remoteStream` when the first track arrives. */
  async subscribe(publisherId, name = MAIN) {
    const stream = subscriptionStream(publisherId, name);
    const existing = this._links.get(stream);
    if (existing && !existing.closed) return existing.pc;
    const pc = this._newPeerConnection();
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    const link = new StreamLink(stream, pc);
    pc.addEventListener('track', (event) => {
      if (link.closed) return;
      const first = link.mediaStream === null;
      if (first) link.mediaStream = new MediaStream();
      link.mediaStream.addTrack(event.track);
      if (first) this._emit('remoteStream', { participantId: publisherId, name, stream, mediaStream: link.mediaStream, pc });
    });
    return this._negotiate(link);
  }

  /** Stops receiving a publication (closes the local peer connection; the server frees its side on leave). */
  unsubscribe(publisherId, name = MAIN) {
    const stream = subscriptionStream(publisherId, name);
    if (this._dropLink(stream)) this._emit('remoteStreamRemoved', { participantId: publisherId, name, stream });
  }

  /** Stops receiving every publication of a publisher. */
  _unsubscribeAll(publisherId) {
    for (const stream of [...this._links.keys()]) {
      if (stream === publisherId || stream.startsWith(`${publisherId}:`)) {
        this.unsubscribe(publisherId, stream === publisherId ? MAIN : stream.slice(publisherId.length + 1));
      }
    }
  }

  /**
   * Removes another participant (a moderator's client only; the service answers 403 otherwise).
   * Everyone, the removed one included, gets participantLeft {participant_id, reason: "removed"}.
   */
  remove(participantId) {
    return this._call('DELETE', `/sessions/${encodeURIComponent(this.sessionId)}/participants/${encodeURIComponent(participantId)}`);
  }

  /** Closes the whole session for everyone (a moderator's client only). */
  closeSession() {
    return this._call('DELETE', `/sessions/${encodeURIComponent(this.sessionId)}`);
  }

  /** Broadcasts a JSON object to the session, or sends it to one participant with `to`. */
  send(payload, to = null) {
    const body = to ? { payload, to } : { payload };
    return this._call('POST', `/sessions/${encodeURIComponent(this.sessionId)}/messages`, body);
  }

  /**
   * Fresh media after `mediaServerLost` or `connectionFailed`: same participant, same queue.
   * Closes every peer connection, asks the service to rejoin, waits until it has released our old
   * endpoints (our own streamUnpublished, at most 5 s), then republishes and resubscribes.
   */
  async rejoin() {
    const me = this.participants.get(this.participantId);
    const wasPublishing = Boolean(me && me.publishing) || this._links.has(PUBLISH) || this.localStreams.size > 0;
    const released = wasPublishing
      ? this._waitFor((m) => m.type === 'streamUnpublished' && m.participant_id === this.participantId, REJOIN_SETTLE_MS)
      : Promise.resolve(null);
    const rejoined = await this._call('POST', `${this._me}/rejoin`);
    if (rejoined && rejoined.ice_servers) this.serviceIceServers = rejoined.ice_servers;
    for (const stream of [...this._links.keys()]) {
      if (stream === PUBLISH || stream.startsWith(`${PUBLISH}:`)) this._dropLink(stream);
      else this._unsubscribeAll(stream.split(':')[0]);
    }
    await released;
    for (const [name, mediaStream] of [...this.localStreams]) await this.publish(mediaStream, name);
    const session = await this._call('GET', `/sessions/${encodeURIComponent(this.sessionId)}`);
    for (const p of session.participants || []) {
      this.participants.set(p.participant_id, { ...this.participants.get(p.participant_id), ...p });
    }
    if (this.autoSubscribe) this._subscribeToPublishers(session.participants || []);
  }

  /**
   * After `mediaServerLost`: rejoin, republish and resubscribe, with backoff, until the publication
   * is answered again (or, not publishing, the rejoin is accepted). One at a time.
   */
  _recoverMedia() {
    if (this._recovering) return this._recovering;
    const reason = 'mediaServerLost';
    this._recovering = (async () => {
      let lastError = null;
      for (let attempt = 1; attempt <= RECONNECT_DELAYS_MS.length; attempt += 1) {
        const inMs = RECONNECT_DELAYS_MS[attempt - 1];
        this._emit('reconnecting', { reason, attempt, inMs });
        await sleep(inMs);
        if (!this._polling) return false;
        try {
          await this.rejoin();
          const link = this._links.get(PUBLISH);
          if (!this.localStream || (link && (await this._answered(link, RECONNECT_ANSWER_MS)))) {
            this._emit('reconnected', { reason, attempt });
            return true;
          }
          lastError = new Error('the new publication was not answered');
        } catch (error) {
          lastError = error;
          // Refusals that no retry changes: we left, were removed, or the session is gone.
          if (error instanceof SignalingError && [401, 403, 404, 409].includes(error.status)) break;
        }
      }
      this._emit('reconnectFailed', { reason, error: lastError });
      return false;
    })().finally(() => {
      this._recovering = null;
    });
    return this._recovering;
  }

  /** After `connectionFailed`: a fresh offer on that stream only (a rejoin in progress redoes it anyway). */
  async _recoverStream(stream) {
    if (this._recovering) return false;
    const reason = 'connectionFailed';
    this._emit('reconnecting', { reason, stream, attempt: 1, inMs: 0 });
    try {
      if (stream === PUBLISH || stream.startsWith(`${PUBLISH}:`)) {
        // A re-offer keeps the publication's subscribers: the service reconnects them to the new endpoint.
        const name = stream === PUBLISH ? MAIN : stream.slice(PUBLISH.length + 1);
        const mediaStream = this.localStreams.get(name);
        if (!mediaStream) return false;
        await this.publish(mediaStream, name);
      } else {
        if (!this._links.has(stream)) return false;
        this._dropLink(stream);
        const [publisherId, name = MAIN] = stream.split(':');
        await this.subscribe(publisherId, name);
      }
      const link = this._links.get(stream);
      if (link && (await this._answered(link, RECONNECT_ANSWER_MS))) {
        this._emit('reconnected', { reason, stream, attempt: 1 });
        return true;
      }
      this._emit('reconnectFailed', { reason, stream, error: new Error('the new offer was not answered') });
    } catch (error) {
      this._emit('reconnectFailed', { reason, stream, error });
    }
    return false;
  }

  /** Whether a link's offer got its sdpAnswer (not an error) within timeoutMs. */
  async _answered(link, timeoutMs) {
    if (link.pc.remoteDescription) return true;
    const outcome = await this._waitFor(
      (m) => m.request_id === link.requestId && (m.type === 'sdpAnswer' || m.type === 'error'), timeoutMs,
    );
    return outcome !== null && outcome.type === 'sdpAnswer';
  }

  /** Leaves the session, stops polling and closes every peer connection (also safe in `pagehide`). */
  async leave() {
    try {
      await this._call('DELETE', this._me, undefined, { keepalive: true });
    } finally {
      this.close('left');
    }
  }

  /** Stops polling and closes every peer connection without telling the service. */
  close(reason = 'closed') {
    this._closeAfterHandling = null;
    if (!this._polling && this._links.size === 0) return;
    this._polling = false;
    if (this._pollAbort) this._pollAbort.abort();
    for (const stream of [...this._links.keys()]) this._dropLink(stream);
    this._emit('closed', { reason });
  }

  // ------------------------------------------------------------------ WebRTC
  _newPeerConnection() {
    const iceServers = [...this.iceServers, ...this.serviceIceServers];
    return new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
  }

  _dropLink(stream) {
    const link = this._links.get(stream);
    if (!link) return false;
    this._links.delete(stream);
    link.close();
    return true;
  }

  async _negotiate(link) {
    const { pc, stream } = link;
    this._links.set(stream, link);
    pc.addEventListener('icecandidate', (event) => {
      // null = our gathering is complete; the service needs no end marker.
      if (event.candidate && event.candidate.candidate) this._queueLocalCandidate(link, event.candidate);
    });
    pc.addEventListener('connectionstatechange', () => {
      this._emit('connectionState', { stream, state: pc.connectionState });
    });
    // Trickle: the offer goes out before gathering finishes, without candidates.
    await pc.setLocalDescription(await pc.createOffer());
    const answer = await this._call('POST', `${this._me}/offers`, { stream, sdp: pc.localDescription.sdp });
    link.requestId = answer.request_id;
    // The poll may have brought the answer (or a refusal) before this POST returned.
    for (const message of link.early.splice(0)) {
      if (message.request_id === link.requestId && !link.closed) await this._handle(message, { replay: true });
    }
    return pc;
  }

  _queueLocalCandidate(link, candidate) {
    const { candidate: text, sdpMid, sdpMLineIndex } = candidate;
    link.localCandidates.push({ candidate: text, sdpMid, sdpMLineIndex });
    if (link.flushTimer === null) {
      link.flushTimer = setTimeout(() => this._flushCandidates(link), CANDIDATE_BATCH_MS);
    }
  }

  async _flushCandidates(link) {
    link.flushTimer = null;
    const candidates = link.localCandidates.splice(0);
    if (link.closed || candidates.length === 0) return;
    try {
      await this._call('POST', `${this._me}/candidates`, { stream: link.stream, candidates });
    } catch (err) {
      this._emit('error', { stream: link.stream, error: err });
    }
  }

  async _addRemoteCandidate(link, candidate) {
    try {
      await link.pc.addIceCandidate(candidate);
    } catch (err) {
      // A candidate of a replaced endpoint, or one this browser cannot use: not fatal.
      console.debug('signaling: remote candidate ignored', candidate, err);
    }
  }

  async _endRemoteCandidates(link) {
    try {
      await link.pc.addIceCandidate();
    } catch {
      // Older browsers do not take an end-of-candidates marker.
    }
  }

  // ------------------------------------------------------------------ polling
  _startPolling() {
    if (this._polling) return;
    this._polling = true;
    this._pollLoop();
  }

  async _pollLoop() {
    let backoff = BACKOFF_MIN_MS;
    while (this._polling) {
      let batch;
      this._pollAbort = new AbortController();
      try {
        batch = await this._call('GET', `${this._me}/messages?after=${this.lastSeq}&wait=${this.pollWait}`,
          undefined, { signal: this._pollAbort.signal });
        backoff = BACKOFF_MIN_MS;
      } catch (error) {
        if (!this._polling) return;
        if (error instanceof SignalingError && [401, 403, 404].includes(error.status)) {
          this.close(`poll refused (${error.status})`);
          return;
        }
        this._emit('pollError', { error, retryInMs: backoff });
        await sleep(backoff);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
        continue;
      }
      for (const message of batch.messages) {
        if (!this._polling) return;
        try {
          await this._handle(message);
        } catch (err) {
          console.error('signaling: handling failed', message, err);
        }
        this.lastSeq = Math.max(this.lastSeq, message.seq);
      }
      this.lastSeq = Math.max(this.lastSeq, batch.last_seq || 0);
    }
  }

  /** Applies one server message to the peer connections and state, then emits it. */
  async _handle(message, { replay = false } = {}) {
    const link = message.stream !== undefined ? this._links.get(message.stream) : undefined;
    const self = this.participantId;
    switch (message.type) {
      case 'sdpAnswer':
        if (link && !link.closed && link.requestId === null) {
          link.early.push(message);
        } else if (link && !link.closed && message.request_id === link.requestId) {
          await link.pc.setRemoteDescription({ type: 'answer', sdp: message.sdp });
          for (const candidate of link.remoteCandidates.splice(0)) await this._addRemoteCandidate(link, candidate);
          if (link.remoteDone) await this._endRemoteCandidates(link);
        }
        break;
      case 'iceCandidate':
        if (link && !link.closed && message.candidate && message.candidate.candidate) {
          if (link.pc.remoteDescription) await this._addRemoteCandidate(link, message.candidate);
          else link.remoteCandidates.push(message.candidate);
        }
        break;
      case 'iceGatheringDone':
        if (link && !link.closed) {
          link.remoteDone = true;
          if (link.pc.remoteDescription) await this._endRemoteCandidates(link);
        }
        break;
      case 'participantJoined':
        this.participants.set(message.participant_id, {
          participant_id: message.participant_id, display_name: message.display_name, publishing: false, state: 'joined',
          role: message.role || 'publisher', metadata: message.metadata || {},
          ...this.participants.get(message.participant_id),
        });
        break;
      case 'participantLeft':
        this.participants.delete(message.participant_id);
        this._unsubscribeAll(message.participant_id);
        // Removed by a moderator: our token now works only for this poll, which brought this.
        if (message.participant_id === self && message.reason === 'removed') this._closeAfterHandling = 'removed';
        break;
      case 'streamPublished': {
        const name = message.name || MAIN;
        const p = this.participants.get(message.participant_id);
        if (p && name === MAIN) p.publishing = true;
        if (message.participant_id !== self && this.autoSubscribe) {
          // Sent again when a re-offer changes the kinds it sends: an existing subscription is kept.
          this.subscribe(message.participant_id, name)
            .catch((error) => this._emit('error', { stream: subscriptionStream(message.participant_id, name), error }));
        }
        break;
      }
      case 'streamUnpublished': {
        const name = message.name || MAIN;
        const p = this.participants.get(message.participant_id);
        if (p && name === MAIN) p.publishing = false;
        this.muted.delete(`${message.participant_id}:${name}`);
        if (message.participant_id !== self) this.unsubscribe(message.participant_id, name);
        break;
      }
      case 'streamMuted':
        this.muted.set(`${message.participant_id}:${message.name || MAIN}`, { audio: message.audio, video: message.video });
        break;
      case 'error': {
        // A refused offer (e.g. 409: that participant is not publishing): drop the link; a later
        // streamPublished subscribes again.
        for (const [stream, other] of [...this._links]) {
          if (!message.request_id) break;
          if (other.requestId === null) {
            other.early.push(message);
          } else if (other.requestId === message.request_id) {
            if (stream === PUBLISH || stream.startsWith(`${PUBLISH}:`)) this._dropLink(stream);
            else {
              const [publisherId, name = MAIN] = stream.split(':');
              this.unsubscribe(publisherId, name);
            }
          }
        }
        break;
      }
      case 'recordingStarted':
        this.recordings.set(message.recording_id, {
          recording_id: message.recording_id, participant_id: message.participant_id, name: message.name,
          state: 'recording', reason: null,
        });
        break;
      case 'recordingStopped': {
        const known = this.recordings.get(message.recording_id) || { recording_id: message.recording_id };
        this.recordings.set(message.recording_id, { ...known, state: 'stopped', reason: message.reason });
        break;
      }
      case 'sessionClosed':
        this.close('session closed');
        break;
      default:
        break; // message, connectionFailed, mediaServerLost: for the application (and below)
    }
    if (this.autoReconnect && !replay) {
      // Not awaited: a rejoin waits for messages this poll loop has to deliver.
      if (message.type === 'mediaServerLost') this._recoverMedia();
      else if (message.type === 'connectionFailed') this._recoverStream(message.stream);
    }
    if (replay) return; // emitted when it first came
    for (const waiter of [...this._waiters]) {
      if (waiter.predicate(message)) {
        this._waiters.delete(waiter);
        clearTimeout(waiter.timer);
        waiter.resolve(message);
      }
    }
    this._emit(message.type, message);
    this._emit('*', message);
    if (this._closeAfterHandling) this.close(this._closeAfterHandling);
  }
}
