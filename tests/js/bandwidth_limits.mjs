// Drives the reference JS client's backend helpers under Node: a session created with bandwidth defaults,
// a token minted with a participant's own limits, a join with it; prints what it got as JSON.
// Usage: node bandwidth_limits.mjs <baseUrl> <apiKey>
import { SignalingClient } from '../../signaling_web/demo/static/signaling-client.js';

const [baseUrl, apiKey] = process.argv.slice(2);
const created = await SignalingClient.createSession({
  baseUrl, apiKey, name: 'limits', bandwidth: { maxVideoSendBandwidth: 1500, minVideoSendBandwidth: 150 },
});
const minted = await SignalingClient.mintToken({
  baseUrl, apiKey, sessionId: created.session_id, bandwidth: { maxVideoRecvBandwidth: 900, maxVideoSendBandwidth: 400 },
});
let refused = null;
try {
  await SignalingClient.mintToken({
    baseUrl, apiKey, sessionId: created.session_id, bandwidth: { minVideoSendBandwidth: 800, maxVideoSendBandwidth: 400 },
  });
} catch (error) {
  refused = { status: error.status, errors: error.body.errors };
}
const client = new SignalingClient({ baseUrl, autoSubscribe: false, pollWait: 1 });
await client.join(created.session_id, minted.join_token, 'limited');
const participantId = client.participantId;
await client.leave();
console.log(JSON.stringify({ sessionId: created.session_id, participantId, refused }));
process.exit(0);
