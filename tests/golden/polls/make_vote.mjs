// Writes tests/golden/polls/vote.json: a poll vote encrypted the way a phone does it, with
// Baileys' own primitives, and proven readable by Baileys' own decryptPollVote. The Python
// suite decrypts the same vector (bridge/jobs/polls.py), so both sides agree on the scheme.
// Run: node tests/golden/polls/make_vote.mjs
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { aesEncryptGCM, decryptPollVote, proto } from '@whiskeysockets/baileys';

const pollMsgId = '3EB0POLL0001';
const pollCreatorJid = '5511999990000@s.whatsapp.net'; // the linked number created the poll
const voterJid = '5511988887777@s.whatsapp.net';
const options = ['Manhã', 'Tarde', 'Noite'];
const secret = randomBytes(32);
const chosen = ['Tarde'];

const selectedOptions = chosen.map((o) => createHash('sha256').update(o).digest());
const plaintext = proto.Message.PollVoteMessage.encode({ selectedOptions }).finish();
const sign = Buffer.concat([
  Buffer.from(pollMsgId), Buffer.from(pollCreatorJid), Buffer.from(voterJid),
  Buffer.from('Poll Vote'), Buffer.from([1]),
]);
const key0 = createHmac('sha256', Buffer.alloc(32)).update(secret).digest();
const key = createHmac('sha256', key0).update(sign).digest();
const iv = randomBytes(12);
const encPayload = aesEncryptGCM(plaintext, key, iv, Buffer.from(`${pollMsgId}\u0000${voterJid}`));

const back = decryptPollVote({ encPayload, encIv: iv }, { pollCreatorJid, pollMsgId, pollEncKey: secret, voterJid });
const names = back.selectedOptions.map((h) => options.find((o) => createHash('sha256').update(o).digest().equals(Buffer.from(h))));
if (JSON.stringify(names) !== JSON.stringify(chosen)) throw new Error(`Baileys read ${names}`);

writeFileSync(new URL('./vote.json', import.meta.url), `${JSON.stringify({
  poll_msg_id: pollMsgId, poll_creator_jid: pollCreatorJid, voter_jid: voterJid, options,
  secret_b64: secret.toString('base64'), enc_payload_b64: Buffer.from(encPayload).toString('base64'),
  enc_iv_b64: iv.toString('base64'), chosen,
}, null, 2)}\n`);
console.log('wrote vote.json; Baileys decrypts it to', names);
