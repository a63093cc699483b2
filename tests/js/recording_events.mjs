// Drives the reference JS client (signaling_web/demo/static/signaling-client.js) under Node, as a page
// would: it joins, and with the API key starts and stops a recording of a publisher the test set up;
// prints what the client saw as JSON. Usage: node recording_events.mjs <baseUrl> <apiKey> <sid> <joinToken> <publisherId>
import { SignalingClient } from '../../signaling_web/demo/static/signaling-client.js';

const [baseUrl, apiKey, sessionId, joinToken, publisherId] = process.argv.slice(2);
const client = new SignalingClient({ baseUrl, autoSubscribe: false, pollWait: 2 });
const seen = [];
const next = (type) => new Promise((resolve) => {
  const off = client.on(type, (message) => { off(); resolve(message); });
});
client.on('*', (message) => seen.push(message.type));
await client.join(sessionId, joinToken, 'js-watcher');
const started = next('recordingStarted');
const created = await SignalingClient.startRecording({ baseUrl, apiKey, sessionId, participantId: publisherId });
await started;
const recordingAfterStart = { ...client.recordings.get(created.recording_id) };
const stopped = next('recordingStopped');
await SignalingClient.stopRecording({ baseUrl, apiKey, sessionId, recordingId: created.recording_id });
await stopped;
const listed = await SignalingClient.listRecordings({ baseUrl, apiKey, sessionId });
let refused = null;
try {
  await SignalingClient.startRecording({ baseUrl, apiKey, sessionId, participantId: publisherId, profile: 'avi' });
} catch (error) {
  refused = { status: error.status, errors: error.body.errors };
}
await client.leave();
console.log(JSON.stringify({
  created, recordingAfterStart, recordingAfterStop: client.recordings.get(created.recording_id), listed, refused, seen,
}));
process.exit(0);
