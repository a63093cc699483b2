// The demo page's UI. All signaling goes through signaling-client.js; this file only draws.
import { MAIN, PUBLISH, SignalingClient, publishStream, subscriptionStream } from './signaling-client.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// ?autoreconnect=0 leaves recovery to the Rejoin button (the client's manual fallback).
const client = new SignalingClient({ autoReconnect: params.get('autoreconnect') !== '0' });
let localStream = null;
let screenStream = null; // our `screen` publication while we share it
// participant_id -> display name; participantLeft carries no name and the client forgets the participant first.
const names = new Map();

// For developers' consoles and the end-to-end test: the client, its peer connections, the stream.
window.demo = {
  client,
  get peerConnections() { return client.peerConnections; },
  get localStream() { return localStream; },
  get screenStream() { return screenStream; },
};

// ------------------------------------------------------------------ lobby
if (params.get('session')) {
  $('join-button').textContent = 'Join the session';
  $('lobby-intro').textContent = 'You were invited to a call. Enter your name to join.';
}
if (params.get('video')) $('video-size').value = params.get('video');
$('display-name').value = params.get('name') || localStorage.getItem('demo.displayName') || '';

function videoConstraints(choice) {
  if (choice === 'none') return false;
  const match = /^(\d+)x(\d+)@(\d+)$/.exec(choice || '');
  if (!match) return true;
  return { width: { ideal: +match[1] }, height: { ideal: +match[2] }, frameRate: { ideal: +match[3] } };
}

function setStatus(text, kind = '') {
  $('status').textContent = text;
  $('status').className = `status ${kind}`;
}

function shareLink() {
  const url = new URL('/demo', location.origin);
  url.searchParams.set('session', client.sessionId);
  url.searchParams.set('join_token', params.get('join_token'));
  return url.toString();
}

$('join-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = $('display-name').value.trim();
  if (!name) return;
  localStorage.setItem('demo.displayName', name);
  $('join-button').disabled = true;
  $('lobby-error').hidden = true;
  try {
    const video = videoConstraints($('video-size').value);
    try {
      localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video });
    } catch (err) {
      chatEvent(`No camera or microphone (${err.name}): you can watch and chat.`);
    }
    // With an API key the page acts as its own backend: it creates the session and mints itself a
    // single-use moderator token; the invite link carries the shared token (others join as publishers).
    const apiKey = $('api-key').value.trim() || null;
    let joinToken = params.get('join_token');
    if (!params.get('session')) {
      setStatus('creating a session…');
      const created = await SignalingClient.createSession({ apiKey, name: `${name}'s call` });
      params.set('session', created.session_id);
      params.set('join_token', created.join_token);
      joinToken = created.join_token;
      if (apiKey) {
        const minted = await SignalingClient.mintToken({ apiKey, sessionId: created.session_id, role: 'moderator', displayName: name });
        joinToken = minted.join_token;
      }
    }
    setStatus('joining…');
    await client.join(params.get('session'), joinToken, name);
    history.replaceState(null, '', `/demo?${new URLSearchParams({ session: client.sessionId, join_token: params.get('join_token') })}`);
    $('share-link').value = shareLink();
    $('lobby').hidden = true;
    $('call').hidden = false;
    setStatus(`in the call as ${name} (${client.role})`, 'ok');
    for (const p of client.participants.values()) names.set(p.participant_id, p.display_name);
    renderParticipants();
    $('screen-button').hidden = client.role === 'subscriber' || !navigator.mediaDevices.getDisplayMedia;
    if (client.role === 'subscriber') {
      chatEvent('You joined as a subscriber: you watch and chat, you do not publish.');
    } else if (localStream) {
      addTile('local', `${name} (you)`, localStream, true);
      await client.publish(localStream);
    }
  } catch (err) {
    $('lobby-error').textContent = `Could not join: ${err.message}`;
    $('lobby-error').hidden = false;
    $('join-button').disabled = false;
    setStatus('not connected');
  }
});

// ------------------------------------------------------------------ the grid
function tileId(participantId) { return `tile-${participantId}`; }

function nameOf(participantId) {
  const p = client.participants.get(participantId);
  return p ? p.display_name : names.get(participantId) || participantId.slice(0, 8);
}

function addTile(participantId, label, mediaStream, local = false, publication = null) {
  removeTile(participantId);
  const tile = document.createElement('div');
  tile.id = tileId(participantId);
  tile.className = `tile ${local ? 'local' : 'remote'}`;
  tile.dataset.participantId = participantId;
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.muted = local; // never play our own microphone back
  video.srcObject = mediaStream;
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = label;
  const state = document.createElement('span');
  state.className = 'state';
  tile.append(video, name, state);
  if (publication) addPublicationControls(tile, publication);
  $('grid').append(tile);
  video.play().catch(() => { /* autoplay refused: the user's next click starts it */ });
}

function removeTile(participantId) {
  const tile = $(tileId(participantId));
  if (tile) {
    tile.querySelector('video').srcObject = null;
    tile.remove();
  }
}

// One tile per received publication, keyed by its stream ("<pid>" for main, "<pid>:<name>" for others).
client.on('remoteStream', ({ participantId, name, stream, mediaStream }) => {
  const publication = { participantId, name: name || MAIN };
  addTile(stream || participantId, name && name !== MAIN ? `${nameOf(participantId)} (${name})` : nameOf(participantId),
    mediaStream, false, publication);
  showMuted(participantId, publication.name);
  for (const recording of client.recordings.values()) {
    if (recording.participant_id === participantId && (recording.name || MAIN) === publication.name && recording.state === 'recording') {
      showRecording(participantId, publication.name, recording.recording_id, 'recording');
    }
  }
});
client.on('remoteStreamRemoved', ({ participantId, stream }) => removeTile(stream || participantId));
// A muted indicator per tile: streamMuted says which kinds the service stopped forwarding.
function publicationTile(participantId, name) {
  return $(tileId(subscriptionStream(participantId, name)));
}

function showMuted(participantId, name) {
  const tile = publicationTile(participantId, name);
  if (!tile) return;
  const { audio, video } = client.mutedState(participantId, name);
  tile.classList.toggle('muted', audio || video);
  tile.dataset.muted = [audio && 'audio', video && 'video'].filter(Boolean).join(' ');
  tile.querySelector('.state').textContent = tile.dataset.muted ? `muted: ${tile.dataset.muted}` : '';
  for (const [kind, off] of [['audio', audio], ['video', video]]) {
    const button = tile.querySelector(`button.mute-${kind}`);
    if (button) button.textContent = off ? `unmute ${kind}` : `mute ${kind}`;
  }
}

// A moderator's actions on a received publication: mute (for everyone) and record.
function addPublicationControls(tile, { participantId, name }) {
  tile.dataset.publisher = participantId;
  tile.dataset.publication = name;
  const recording = document.createElement('span');
  recording.className = 'recording';
  tile.append(recording);
  if (client.role !== 'moderator') return;
  const actions = document.createElement('div');
  actions.className = 'actions';
  for (const kind of ['video', 'audio']) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = `mute-${kind}`;
    button.textContent = `mute ${kind}`;
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await client.mute(participantId, name, { [kind]: !client.mutedState(participantId, name)[kind] });
      } catch (err) {
        chatEvent(`could not mute ${nameOf(participantId)}'s ${kind}: ${err.message}`);
      } finally {
        button.disabled = false;
      }
    });
    actions.append(button);
  }
  const record = document.createElement('button');
  record.type = 'button';
  record.className = 'record';
  record.textContent = 'record';
  record.addEventListener('click', async () => {
    record.disabled = true;
    try {
      if (tile.dataset.recordingId && tile.dataset.recording !== 'stopped') {
        await client.stopRecording(tile.dataset.recordingId);
      } else {
        showRecording(participantId, name, '', 'starting');
        const started = await client.startRecording(participantId, name);
        // recordingStarted may already have come (through the poll) and said more than "starting".
        if (tile.dataset.recording === 'starting') showRecording(participantId, name, started.recording_id, 'starting');
      }
    } catch (err) {
      showRecording(participantId, name, tile.dataset.recordingId || '', tile.dataset.recordingId ? tile.dataset.recording : '');
      chatEvent(`could not record ${nameOf(participantId)}: ${err.message}`);
    } finally {
      record.disabled = false;
    }
  });
  actions.append(record);
  tile.append(actions);
}

// The recording state on a tile: starting (asked) -> recording (recordingStarted) -> stopped (recordingStopped).
function showRecording(participantId, name, recordingId, state, reason = null) {
  const tile = publicationTile(participantId, name);
  if (!tile) return;
  tile.dataset.recordingId = recordingId;
  tile.dataset.recording = state;
  tile.classList.toggle('recording', state === 'recording');
  const label = tile.querySelector('.recording');
  if (label) label.textContent = state && `${state === 'recording' ? '● ' : ''}${state}${reason && reason !== 'stopped' ? ` (${reason})` : ''}`;
  const record = tile.querySelector('button.record');
  if (record) record.textContent = state === 'starting' || state === 'recording' ? 'stop recording' : 'record';
}
client.on('recordingStarted', (m) => showRecording(m.participant_id, m.name || MAIN, m.recording_id, 'recording'));
client.on('recordingStopped', (m) => {
  const tile = document.querySelector(`#grid .tile[data-recording-id="${CSS.escape(m.recording_id)}"]`);
  if (tile) showRecording(tile.dataset.publisher, tile.dataset.publication, m.recording_id, 'stopped', m.reason);
});
client.on('streamMuted', (m) => showMuted(m.participant_id, m.name || 'main'));
client.on('connectionState', ({ stream, state }) => {
  const tile = $(tileId(stream === PUBLISH ? 'local' : stream)); // our screen's tile is "publish:screen"
  if (tile) tile.querySelector('.state').textContent = state === 'connected' ? '' : state;
});

// ------------------------------------------------------------------ people and chat
function renderParticipants() {
  const list = $('participants');
  list.replaceChildren();
  for (const p of client.participants.values()) {
    if (p.state === 'left') continue;
    const item = document.createElement('li');
    item.dataset.participantId = p.participant_id;
    item.textContent = p.display_name;
    const tag = document.createElement('span');
    tag.className = 'tag';
    tag.textContent = [p.participant_id === client.participantId ? 'you' : '', p.role || 'publisher', p.publishing ? 'live' : '']
      .filter(Boolean).join(', ');
    item.append(tag);
    if (client.role === 'moderator' && p.participant_id !== client.participantId) {
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'remove';
      remove.textContent = 'remove';
      remove.title = `Remove ${p.display_name} from the call`;
      remove.addEventListener('click', async () => {
        remove.disabled = true;
        try {
          await client.remove(p.participant_id);
        } catch (err) {
          remove.disabled = false;
          chatEvent(`could not remove ${p.display_name}: ${err.message}`);
        }
      });
      item.append(remove);
    }
    list.append(item);
  }
}

function chatLine(build) {
  const item = document.createElement('li');
  build(item);
  $('chat').append(item);
  $('chat').scrollTop = $('chat').scrollHeight;
}

function chatEvent(text) {
  chatLine((item) => { item.className = 'event'; item.textContent = text; });
}

client.on('participantJoined', (m) => {
  names.set(m.participant_id, m.display_name);
  chatEvent(m.participant_id === client.participantId ? 'You joined' : `${m.display_name} joined`);
  renderParticipants();
});
client.on('participantLeft', (m) => {
  chatEvent(`${names.get(m.participant_id) || 'someone'} left${m.reason && m.reason !== 'left' ? ` (${m.reason})` : ''}`);
  for (const tile of [...document.querySelectorAll('.tile.remote')]) {
    const stream = tile.dataset.participantId;
    if (stream === m.participant_id || stream.startsWith(`${m.participant_id}:`)) removeTile(stream);
  }
  renderParticipants();
});
client.on('streamPublished', renderParticipants);
client.on('streamUnpublished', renderParticipants);
client.on('message', (m) => {
  const text = m.payload && typeof m.payload.text === 'string' ? m.payload.text : JSON.stringify(m.payload);
  chatLine((item) => {
    const who = document.createElement('b');
    who.textContent = m.from === client.participantId ? 'you' : nameOf(m.from);
    item.append(who, document.createTextNode(text));
  });
});

$('chat-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = $('chat-input').value.trim();
  if (!text) return;
  $('chat-input').value = '';
  try {
    await client.send({ text });
  } catch (err) {
    chatEvent(`not sent: ${err.message}`);
  }
});

// ------------------------------------------------------------------ trouble and rejoin
function showNotice(text, { rejoin = true } = {}) {
  $('notice-text').textContent = text;
  $('notice').hidden = false;
  $('rejoin-button').hidden = !rejoin;
  $('rejoin-button').disabled = !rejoin;
}

// With automatic reconnection the client recovers by itself (`reconnecting` … `reconnected`); the
// Rejoin button appears only when it gave up, or when it is switched off.
client.on('mediaServerLost', () => {
  if (!client.autoReconnect) showNotice('The media server handling this call was lost. Rejoin to get video back.');
});
client.on('connectionFailed', (m) => {
  if (client.autoReconnect) return;
  showNotice(m.stream === PUBLISH
    ? 'Your media connection failed. Rejoin to publish again.'
    : `The connection receiving ${nameOf(m.stream)} failed. Rejoin to reconnect.`);
});
client.on('reconnecting', ({ reason, stream, attempt, inMs }) => {
  const what = reason === 'mediaServerLost' ? 'The media server handling this call was lost'
    : (stream === PUBLISH ? 'Your media connection failed' : `The connection receiving ${nameOf(stream)} failed`);
  const when = inMs ? ` in ${Math.round(inMs / 100) / 10} s` : '';
  showNotice(`${what}: reconnecting${when} (attempt ${attempt})…`, { rejoin: false });
});
client.on('reconnected', ({ reason }) => {
  $('notice').hidden = true;
  chatEvent(reason === 'mediaServerLost' ? 'Reconnected to a media server.' : 'Media connection restored.');
});
client.on('reconnectFailed', ({ error }) => showNotice(`Could not reconnect (${error ? error.message : 'no answer'}). Rejoin to try again.`));
client.on('pollError', ({ retryInMs }) => setStatus(`connection trouble, retrying in ${Math.round(retryInMs / 100) / 10} s`, 'bad'));
client.on('*', () => { if ($('status').classList.contains('bad')) setStatus(`in the call as ${client.displayName}`, 'ok'); });
client.on('error', (m) => { if (m.message) chatEvent(`service: ${m.message}`); });

$('rejoin-button').addEventListener('click', async () => {
  $('rejoin-button').disabled = true;
  $('notice-text').textContent = 'Rejoining…';
  try {
    await client.rejoin();
    $('notice').hidden = true;
    chatEvent('Rejoined with fresh media.');
  } catch (err) {
    showNotice(`Rejoin failed: ${err.message}. Try again.`);
  }
});

// ------------------------------------------------------------------ controls and the end
$('copy-link').addEventListener('click', async () => {
  $('share-link').select();
  try {
    await navigator.clipboard.writeText($('share-link').value);
    $('copy-link').textContent = 'Copied';
  } catch {
    document.execCommand('copy');
  }
});

function toggleTracks(kind, button, onLabel, offLabel) {
  if (!localStream) return;
  const off = button.getAttribute('aria-pressed') !== 'true';
  for (const track of localStream.getTracks()) if (track.kind === kind) track.enabled = !off;
  button.setAttribute('aria-pressed', String(off));
  button.textContent = off ? offLabel : onLabel;
}
// Screen sharing: a second publication, `screen`. Stopping it (our button, or the browser's own
// "stop sharing", which ends the track) unpublishes it.
const SCREEN = 'screen';
async function startSharing() {
  const video = videoConstraints($('video-size').value);
  screenStream = await navigator.mediaDevices.getDisplayMedia({ video: video || true, audio: false });
  for (const track of screenStream.getTracks()) track.addEventListener('ended', () => stopSharing());
  addTile(publishStream(SCREEN), `${client.displayName} (your screen)`, screenStream, true);
  $(tileId(publishStream(SCREEN))).classList.add('screen'); // not mirrored, unlike the camera
  $('screen-button').setAttribute('aria-pressed', 'true');
  $('screen-button').textContent = 'Stop sharing';
  await client.publish(screenStream, SCREEN);
}

async function stopSharing() {
  if (!screenStream) return;
  const stream = screenStream;
  screenStream = null;
  for (const track of stream.getTracks()) track.stop();
  removeTile(publishStream(SCREEN));
  $('screen-button').setAttribute('aria-pressed', 'false');
  $('screen-button').textContent = 'Share screen';
  if (client.localStreams.has(SCREEN)) await client.unpublish(SCREEN);
}

$('screen-button').addEventListener('click', async () => {
  $('screen-button').disabled = true;
  try {
    if (screenStream) await stopSharing();
    else await startSharing();
  } catch (err) {
    if (err.name !== 'NotAllowedError') chatEvent(`screen sharing: ${err.message}`);
    await stopSharing().catch(() => {});
  } finally {
    $('screen-button').disabled = false;
  }
});

$('mute-button').addEventListener('click', () => toggleTracks('audio', $('mute-button'), 'Mute', 'Unmute'));
$('camera-button').addEventListener('click', () => toggleTracks('video', $('camera-button'), 'Camera off', 'Camera on'));

function end(text) {
  for (const stream of [localStream, screenStream]) if (stream) for (const track of stream.getTracks()) track.stop();
  screenStream = null;
  $('grid').replaceChildren();
  $('call').hidden = true;
  $('notice').hidden = true;
  $('ended-text').textContent = text;
  $('back-link').href = shareLink();
  $('back-link').textContent = 'Join again';
  $('ended').hidden = false;
  setStatus('not connected');
}

$('leave-button').addEventListener('click', async () => {
  $('leave-button').disabled = true;
  try {
    await client.leave();
  } finally {
    end('You left the call.');
  }
});
client.on('sessionClosed', () => end('The session was closed.'));
client.on('closed', ({ reason }) => {
  if (reason === 'removed') end('A moderator removed you from the call.');
  else if (reason !== 'left' && !$('call').hidden) end(`Disconnected: ${reason}.`);
});
window.addEventListener('pagehide', () => { if (client.participantId && !$('call').hidden) client.leave().catch(() => {}); });
