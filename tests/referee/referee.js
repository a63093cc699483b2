#!/usr/bin/env node
// Drives kms_emulator with the official kurento-client 7.3.0 and prints a JSON summary.
// Usage: node referee.js ws://127.0.0.1:8888/kurento [ws://127.0.0.1:8888/_emulator/control]
// The second URL is the emulator's test-only control socket (`--test-control`); with it the referee
// also checks reconnection after a dropped socket and session loss (40007). Exit 0 only if every
// check passed.
//
// Error codes the emulator implements that the npm client cannot provoke, and why:
// - -32700, -32600, -32601, -32602: the client always sends one well-formed JSON-RPC 2.0 object,
//   with a method it knows and an object as params.
// - 40109 (newref outside its transaction): the client only writes newref:N inside the transaction
//   that created object N.
// - -32603: an internal error of the server; nothing a client does should cause one.
// The codes it can only reach through its internal request path (MediaObject._invoke, the function
// every generated method calls, and the '_rpc' event its newListener handler emits) are checked
// that way and say so in their names: 40008, -32000, 40106.
'use strict';

const fs = require('fs');
const path = require('path');
const util = require('util');
// kurento-client 7.3.0's Transaction calls Node's Domain class as a function, which Node 12+ refuses
// ("Class constructor Domain cannot be invoked without 'new'"); without it, TransactionsManager.js
// uses its own stand-in. Nothing on the wire changes.
require('domain').Domain = undefined;
const kurento = require('kurento-client');
// Installed with kurento-client (kurento-jsonrpc depends on it); Node 20 has no global WebSocket.
const WebSocket = require('ws');

// kurento-client logs with console.log (e.g. "reconnect to server"); stdout is for the summary only.
console.log = console.error;

const url = process.argv[2] || 'ws://127.0.0.1:8888/kurento';
const controlUrl = process.argv[3] || null;
const fixtures = process.env.FIXTURES_DIR ||
  path.resolve(__dirname, '..', 'fixtures', 'browser-sdp');
const offer = fs.readFileSync(path.join(fixtures, 'chromium-publish.sdp'), 'utf8');
const remoteCandidates = JSON.parse(fs.readFileSync(path.join(fixtures, 'chromium-publish.candidates.json'), 'utf8'));

const checks = [];
function check(name, ok, detail) {
  checks.push({ name, ok: !!ok, detail: detail === undefined ? null : detail });
}

function waitFor(emitter, event, ms, predicate) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.removeListener(event, listener);
      reject(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    function listener(data) {
      if (predicate && !predicate(data)) return;
      clearTimeout(timer);
      emitter.removeListener(event, listener);
      resolve(data);
    }
    emitter.on(event, listener);
  });
}

// The callback form: the promise form of several generated methods swallows errors (kurento-client-core
// passes a logging noop as callback when none is given).
function call(object, method, ...args) {
  return new Promise((resolve, reject) =>
    object[method](...args, (error, value) => (error ? reject(error) : resolve(value))));
}

async function expectError(name, promise, code, ctor) {
  try {
    await promise;
    check(name, false, 'no error');
  } catch (error) {
    const ok = error.code === code && (!ctor || error instanceof ctor);
    check(name, ok, { code: error.code, type: error.constructor.name, message: error.message });
  }
}

function control(command, params) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(controlUrl);
    ws.on('open', () => ws.send(JSON.stringify(Object.assign({ command }, params))));
    ws.on('message', (data) => {
      ws.close();
      const answer = JSON.parse(data);
      if (answer.ok) resolve(answer); else reject(new Error(answer.error));
    });
    ws.on('error', reject);
  });
}

function sinkIds(connections) {
  return connections.map((c) => `${c.sink.id || c.sink}:${c.type}`).sort();
}

async function main() {
  // Awaiting the client gives a copy of it; sessionId and the 'reconnected' events are on the original.
  const original = kurento(url, { strict: true, failAfter: 1 });
  const client = await original;
  check('connect strict mode', true);

  const pipeline = await client.create('MediaPipeline');
  check('pipeline id', /^[0-9a-f-]{36}_kurento\.MediaPipeline$/.test(pipeline.id), pipeline.id);
  const publisher = await pipeline.create('WebRtcEndpoint');
  const viewer = await pipeline.create('WebRtcEndpoint');
  check('endpoint ids under pipeline', publisher.id.startsWith(pipeline.id + '/') &&
    viewer.id.endsWith('_kurento.WebRtcEndpoint'), [publisher.id, viewer.id]);

  // --- SDP and ICE ---------------------------------------------------------------------------------
  await expectError('getLocalSessionDescriptor before negotiation -> 40202',
    call(publisher, 'getLocalSessionDescriptor'), 40202);
  await expectError('getRemoteSessionDescriptor before negotiation -> 40203',
    call(publisher, 'getRemoteSessionDescriptor'), 40203);
  await expectError('gatherCandidates before negotiation -> 40400', call(publisher, 'gatherCandidates'), 40400);

  const candidates = [];
  publisher.on('IceCandidateFound', (event) => candidates.push(event.candidate));
  const gatheringDone = waitFor(publisher, 'IceGatheringDone', 5000);

  await publisher.addIceCandidate(kurento.getComplexType('IceCandidate')(remoteCandidates[0]));
  check('addIceCandidate before SDP', true);
  const answer = await publisher.processOffer(offer);
  check('processOffer answer', typeof answer === 'string' && answer.startsWith('v=0') &&
    answer.includes('a=group:BUNDLE'), answer.slice(0, 40));
  await publisher.gatherCandidates();
  await gatheringDone;
  check('IceCandidateFound before IceGatheringDone', candidates.length > 0 &&
    typeof candidates[0].candidate === 'string' && candidates[0].candidate.startsWith('candidate:'),
    candidates.map((c) => c.candidate));
  await publisher.addIceCandidate(kurento.getComplexType('IceCandidate')(remoteCandidates[1]));
  check('getLocalSessionDescriptor is the answer', await publisher.getLocalSessionDescriptor() === answer);
  check('getRemoteSessionDescriptor is the offer', await publisher.getRemoteSessionDescriptor() === offer);

  await expectError('second processOffer -> 40208', call(publisher, 'processOffer', offer), 40208);
  await expectError('generateOffer after processOffer -> 40208', call(publisher, 'generateOffer'), 40208);
  const fresh = await pipeline.create('WebRtcEndpoint');
  await expectError('empty offer -> 40201', call(fresh, 'processOffer', ''), 40201);
  await expectError('offer that is not SDP -> 40201', call(fresh, 'processOffer', 'not sdp'), 40201);
  await expectError('processAnswer without generateOffer -> 40209', call(fresh, 'processAnswer', offer), 40209);
  const generated = await call(fresh, 'generateOffer');
  check('generateOffer', typeof generated === 'string' && generated.startsWith('v=0'), generated.slice(0, 40));
  // Any SDP with m-lines stands in for the remote answer: the signaling-mode emulator only parses it.
  await call(fresh, 'processAnswer', offer);
  await expectError('second processAnswer -> 40210', call(fresh, 'processAnswer', offer), 40210);
  await expectError('offer that is not a string -> 40001', call(fresh, 'processOffer', 5), 40001);

  // --- element connections ------------------------------------------------------------------------
  const connected = [];
  const disconnected = [];
  const onConnected = (event) => connected.push(`${event.sink.id || event.sink}:${event.mediaType}`);
  publisher.on('ElementConnected', onConnected);
  publisher.on('ElementDisconnected', (event) => disconnected.push(`${event.sink.id || event.sink}:${event.mediaType}`));
  await publisher.connect(viewer);
  await publisher.connect(viewer);
  const sinks = await publisher.getSinkConnections();
  check('connect(sink) twice', sinks.length >= 1 && sinks.every((c) => c.sink.id === viewer.id || c.sink === viewer.id),
    sinks.length);
  await publisher.disconnect(viewer, 'AUDIO');
  check('disconnect(sink, AUDIO)', util.isDeepStrictEqual(sinkIds(await publisher.getSinkConnections()),
    [`${viewer.id}:DATA`, `${viewer.id}:VIDEO`]), sinkIds(await publisher.getSinkConnections()));
  await publisher.disconnect(viewer);
  check('disconnect(sink)', (await publisher.getSinkConnections()).length === 0);
  await publisher.connect(viewer, 'VIDEO');
  check('connect(sink, VIDEO)', util.isDeepStrictEqual(sinkIds(await publisher.getSinkConnections()),
    [`${viewer.id}:VIDEO`]) && (await publisher.getSinkConnections('AUDIO')).length === 0,
    sinkIds(await publisher.getSinkConnections()));
  const viewerSources = await viewer.getSourceConnections('VIDEO');
  check('getSourceConnections(VIDEO)', viewerSources.length === 1 &&
    (viewerSources[0].source.id || viewerSources[0].source) === publisher.id, viewerSources.length);
  check('ElementConnected/Disconnected events', connected.includes(`${viewer.id}:VIDEO`) &&
    disconnected.includes(`${viewer.id}:AUDIO`), { connected, disconnected });
  // Server-side mute (issue 15): all kinds, one kind off, back on.
  await publisher.connect(viewer);
  await publisher.disconnect(viewer, 'VIDEO');
  const mutedVideo = sinkIds(await publisher.getSinkConnections());
  await publisher.connect(viewer, 'VIDEO');
  check('mute: disconnect(sink, VIDEO) then connect(sink, VIDEO)',
    util.isDeepStrictEqual(mutedVideo, [`${viewer.id}:AUDIO`, `${viewer.id}:DATA`]) &&
    util.isDeepStrictEqual(sinkIds(await publisher.getSinkConnections()),
      [`${viewer.id}:AUDIO`, `${viewer.id}:DATA`, `${viewer.id}:VIDEO`]), mutedVideo);
  await publisher.requestKeyframe();
  check('requestKeyframe', true);
  await publisher.setMaxVideoRecvBandwidth(2500);
  await viewer.setMaxVideoSendBandwidth(1500);
  check('bandwidth properties', (await publisher.getMaxVideoRecvBandwidth()) === 2500 &&
    (await viewer.getMaxVideoSendBandwidth()) === 1500);
  await publisher.disconnect(viewer);
  await publisher.connect(viewer, 'VIDEO');

  // Removing the last listener unsubscribes. Events of one object arrive in order on the one socket,
  // so once the ElementDisconnected of the next connect/disconnect pair is in, an ElementConnected
  // for it would have arrived before: none must have. (A refused unsubscribe is emitted as 'error' on
  // the object, which nothing listens to: it would end the referee as an uncaught exception.)
  publisher.removeListener('ElementConnected', onConnected);
  const countBefore = connected.length;
  const other = await pipeline.create('WebRtcEndpoint');
  const otherGone = waitFor(publisher, 'ElementDisconnected', 5000, (event) => (event.sink.id || event.sink) === other.id);
  await publisher.connect(other, 'AUDIO');
  await publisher.disconnect(other, 'AUDIO');
  await otherGone;
  check('unsubscribe (removeListener of the last listener)', connected.length === countBefore, connected);

  // --- ServerManager -------------------------------------------------------------------------------
  const manager = await client.getServerManager();
  const info = await manager.getInfo();
  const names = info.modules.map((m) => m.name);
  check('ServerManager.getInfo', info.version === '7.3.0' && ['core', 'elements', 'filters'].every((n) => names.includes(n)),
    { version: info.version, names });
  const memory = await manager.getUsedMemory();
  check('ServerManager.getUsedMemory', typeof memory === 'number' && memory > 0, memory);
  const pipelines = await manager.getPipelines();
  check('ServerManager.getPipelines', pipelines.some((p) => p.id === pipeline.id), pipelines.length);
  const sessions = await manager.getSessions();
  check('ServerManager.getSessions', Array.isArray(sessions) && sessions.length >= 1, sessions.length);
  const cpus = await manager.getCpuCount();
  check('ServerManager.getCpuCount', Number.isInteger(cpus) && cpus >= 1, cpus);
  const usedCpu = await manager.getUsedCpu(100);
  check('ServerManager.getUsedCpu(100)', typeof usedCpu === 'number' && usedCpu >= 0, usedCpu);
  const kmd = await call(manager, 'getKmd', 'core');
  check('ServerManager.getKmd(core)', typeof kmd === 'string' && JSON.parse(kmd).name === 'core');
  await expectError('getKmd of an unknown module -> 40500', call(manager, 'getKmd', 'nope'), 40500);

  // --- objects by id, tags -------------------------------------------------------------------------
  const described = await call(client, 'getMediaobjectById', viewer.id);
  check('getMediaobjectById', described.id === viewer.id, described.constructor.name);
  const parent = await viewer.getMediaPipeline();
  check('getMediaPipeline', parent.id === pipeline.id, parent.id);
  const children = await pipeline.getChildren();
  check('getChildren', [publisher.id, viewer.id, fresh.id, other.id].every((id) => children.some((c) => c.id === id)),
    children.length);
  await viewer.addTag('room', 'r1');
  check('addTag/getTag', await viewer.getTag('room') === 'r1');
  await expectError('getTag of an unknown key -> 40110', call(viewer, 'getTag', 'nope'), 40110);

  // --- errors --------------------------------------------------------------------------------------
  await expectError('unknown object -> ReferenceError 40101',
    call(client, 'getMediaobjectById', pipeline.id + '/00000000-0000-0000-0000-000000000000_kurento.WebRtcEndpoint'),
    40101, ReferenceError);
  await expectError('unknown operation via _invoke -> 40008',
    publisher._invoke(undefined, 'noSuchOperation', {}), 40008);
  await expectError('invoke without operation via _invoke -> -32000',
    publisher._invoke(undefined, undefined, {}), -32000);
  await expectError('unknown event via _rpc subscribe -> 40106', new Promise((resolve, reject) =>
    publisher.emit('_rpc', undefined, 'subscribe', { object: publisher, type: 'OnIceCandidate' },
      (error, value) => (error ? reject(error) : resolve(value)))), 40106);
  try {
    publisher.on('OnIceCandidate', () => {});
    check('6.x event name refused locally', false, 'no error');
  } catch (error) {
    check('6.x event name refused locally', error instanceof SyntaxError, error.message);
  }
  // A client with a plugin the server lacks: the class is known locally, the factory is not on the server.
  const Base = kurento.register.classes.FaceOverlayFilter;
  function NotInstalledFilter() { Base.apply(this, arguments); }
  util.inherits(NotInstalledFilter, Base);
  Object.assign(NotInstalledFilter, { constructorParams: Base.constructorParams, events: Base.events });
  kurento.register('NotInstalledFilter', NotInstalledFilter);
  await expectError('create of a type the server lacks -> 40108', pipeline.create('NotInstalledFilter'), 40108);

  // --- release -------------------------------------------------------------------------------------
  await viewer.release();
  await expectError('released endpoint -> ReferenceError 40101', call(client, 'getMediaobjectById', viewer.id),
    40101, ReferenceError);
  const left = await pipeline.getChildren();
  check('release one endpoint', !left.some((c) => c.id === viewer.id) && left.some((c) => c.id === publisher.id) &&
    (await publisher.getSinkConnections()).length === 0, left.length);
  await expectError('invoke on a released endpoint -> 40101', call(viewer, 'getName'), 40101);

  await transactions(client, pipeline);
  await recorders(pipeline, publisher);

  if (controlUrl) await reconnection(original, pipeline, publisher);

  await pipeline.release();
  check('release pipeline', true);
  const after = await manager.getPipelines();
  check('pipeline gone after release', !after.some((p) => p.id === pipeline.id), after.length);
  client.close();
}

// RecorderEndpoint (elements.kmd) through the client's generated methods and events: UriEndpoint's
// getUri/getState/pause, RecorderEndpoint's record/stopAndWait, and the events each raises.
async function recorders(pipeline, publisher) {
  const uri = 'file:///tmp/kms-emulator-referee/recording.webm';
  const recorder = await pipeline.create('RecorderEndpoint', { uri, mediaProfile: 'WEBM', stopOnEndOfStream: false });
  check('RecorderEndpoint create', recorder.id.startsWith(pipeline.id + '/') &&
    recorder.id.endsWith('_kurento.RecorderEndpoint'), recorder.id);
  check('RecorderEndpoint getUri', await recorder.getUri() === uri);
  check('RecorderEndpoint getState before record -> STOP', await recorder.getState() === 'STOP');
  await publisher.connect(recorder);
  const sources = await recorder.getSourceConnections();
  check('RecorderEndpoint as a sink', sources.length >= 1 &&
    sources.every((c) => (c.source.id || c.source) === publisher.id), sources.length);
  const states = [];
  recorder.on('UriEndpointStateChanged', (e) => states.push(e.state));
  const recording = waitFor(recorder, 'Recording', 5000);
  await recorder.record();
  await recording;
  check('record -> Recording, state START', await recorder.getState() === 'START');
  const paused = waitFor(recorder, 'Paused', 5000);
  await recorder.pause();
  await paused;
  check('pause -> Paused, state PAUSE', await recorder.getState() === 'PAUSE');
  await recorder.record();
  const stopped = waitFor(recorder, 'Stopped', 5000);
  await recorder.stopAndWait();
  await stopped;
  check('stopAndWait -> Stopped, state STOP', await recorder.getState() === 'STOP');
  check('UriEndpointStateChanged START, PAUSE, START, STOP',
    util.isDeepStrictEqual(states, ['START', 'PAUSE', 'START', 'STOP']), states);
  const other = await pipeline.create('RecorderEndpoint', { uri, mediaProfile: 'MP4' });
  const otherStopped = waitFor(other, 'Stopped', 5000);
  await other.record();
  await other.stop();
  await otherStopped;
  check('stop -> Stopped (MP4 profile)', await other.getState() === 'STOP');
  await recorder.release();
  await other.release();
}

// The client's own transactions: one `transaction` request whose later operations name the objects
// earlier ones create as newref:N (commitTransactional in kurento-client's KurentoClient.js).
async function transactions(client, pipeline) {
  const tx = client.beginTransaction();
  const txPipeline = client.create(tx, 'MediaPipeline');
  const txEndpoint = txPipeline.create(tx, 'WebRtcEndpoint');
  const txAnswer = new Promise((resolve, reject) =>
    txEndpoint.processOffer(tx, offer, (error, value) => (error ? reject(error) : resolve(value))));
  await tx.commit();
  const answer = await txAnswer;
  check('transaction: create + create(newref) + processOffer(newref)',
    /_kurento\.MediaPipeline$/.test(txPipeline.id) && txEndpoint.id.startsWith(txPipeline.id + '/') &&
    typeof answer === 'string' && answer.startsWith('v=0'), { pipeline: txPipeline.id, endpoint: txEndpoint.id });
  check('transaction: its objects are usable afterwards',
    await txEndpoint.getRemoteSessionDescriptor() === offer && (await txEndpoint.getMediaPipeline()).id === txPipeline.id);

  // KMS stops at the first failing operation: its callback gets the error, later ones never ran.
  const failing = client.beginTransaction();
  const second = new Promise((resolve) => txEndpoint.processOffer(failing, offer, (error) => resolve(error)));
  const never = new Promise((resolve) =>
    pipeline.create(failing, 'WebRtcEndpoint', (error, value) => resolve(error || value)));
  await failing.commit();
  const [secondError, neverResult] = await Promise.all([second, never]);
  check('transaction: failing op -> its error (40208), later ops not run',
    secondError && secondError.code === 40208 && neverResult instanceof Error &&
    /not executed/.test(neverResult.message), { second: secondError && secondError.code, never: String(neverResult) });

  // pipeline.transaction(fn) runs fn's calls as one transaction; release goes in it too.
  await client.transaction(function () {
    txEndpoint.release();
    txPipeline.release();
  });
  await expectError('transaction: released objects are gone -> 40101',
    call(client, 'getMediaobjectById', txPipeline.id), 40101, ReferenceError);
}

async function reconnection(client, pipeline, publisher) {
  const sessionId = client.sessionId;
  // The server drops the socket: the client reconnects and resumes its session with connect {sessionId}.
  const resumed = waitFor(client, 'reconnected', 10000);
  const { dropped } = await control('dropConnections', { sessionId });
  const sameSession = await resumed;
  const { sessions } = await control('sessions');
  check('reconnected(true) after a dropped socket', dropped === 1 && sameSession === true &&
    client.sessionId === sessionId && sessions[sessionId].resumed === 1 && sessions[sessionId].bound,
  { dropped, sameSession, session: sessions[sessionId] });
  // Subscriptions live on the server's session: events keep coming on the new socket.
  const sink = await pipeline.create('WebRtcEndpoint');
  const event = waitFor(publisher, 'ElementDisconnected', 5000, (e) => (e.sink.id || e.sink) === sink.id);
  await publisher.connect(sink, 'VIDEO');
  await publisher.disconnect(sink, 'VIDEO');
  check('events after reconnecting', (await event).mediaType === 'VIDEO');

  // Session lost (as after KMS garbage-collected it): connect {sessionId} gets 40007, the client
  // emits reconnected(false), keeps its sessionId, and the server re-creates the session on use.
  const lost = waitFor(client, 'reconnected', 10000);
  await control('expireSession', { sessionId });
  const same = await lost;
  const recreated = await client.create('MediaPipeline');
  check('40007 on reconnect -> reconnected(false)', same === false && client.sessionId === sessionId &&
    typeof recreated.id === 'string', { same, sessionId: client.sessionId });
  await expectError('objects of the collected session are gone -> 40101', call(publisher, 'getName'), 40101);
  await recreated.release();
}

const timer = setTimeout(() => finish(new Error('referee timed out')), 60000);

function finish(error) {
  clearTimeout(timer);
  if (error) check('no unexpected error', false, String(error && error.stack || error));
  const passed = checks.length > 0 && checks.every((c) => c.ok);
  process.stdout.write(JSON.stringify({ url, passed, checks }, null, 1) + '\n');
  process.exit(passed ? 0 : 1);
}

process.on('uncaughtException', finish);
main().then(() => finish(null), finish);
