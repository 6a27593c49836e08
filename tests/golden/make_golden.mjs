// Writes tests/golden/to_chatwoot/<content_type>/<case>.json: one WhatsApp message as the sidecar
// would frame it, and the Chatwoot draft Ponte must make of it.
//
//   node tests/golden/make_golden.mjs          (from the project root; rewrites every case)
//
// The events are real shapes: each message content goes through Baileys' own protobuf classes
// (proto.Message.fromObject -> encode -> decode, i.e. what Baileys gets off the wire), sits in a
// WAMessage shaped like Baileys' decodeMessageNode output, and is framed by the sidecar's own
// messageFrames() (toWire + getContentType(normalizeMessageContent(...))). `media` mirrors what
// sidecar/media.js reports. The `expected` drafts are written by hand, here, and checked by
// tests/test_converters.py (ConvertContext: texts pt_BR unless the case says `language`,
// now = NOW, old_message_minutes = OLD_MINUTES). `expected: {ignored: true}` means IgnoreEvent.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { proto } from '@whiskeysockets/baileys';

import { messageFrames, RecentIds } from '../../sidecar/events.js';

// GOLDEN_OUT: write elsewhere (tests/test_converters.py checks the committed files are current).
const OUT = process.env.GOLDEN_OUT || fileURLToPath(new URL('./to_chatwoot/', import.meta.url));

/** 2025-11-29 10:15:00 UTC; the test's `now` is two minutes later. */
const TS = 1764411300;
const SPOOL = '/srv/ponte/data/spool/1-7';
const MAX_BYTES = 16 * 1024 * 1024;

const CUSTOMER = '5511988887777@s.whatsapp.net';
const CUSTOMER_LID = '207365884047522@lid';
const ME = '5511999990000@s.whatsapp.net';
const GROUP = '120363041234567890@g.us';
const MEMBER = '5511977776666@s.whatsapp.net';
const MEMBER_LID = '198765432109876@lid';

/** Deterministic bytes, base64 (protobufjs' fromObject takes base64 for bytes fields). */
function bytes(seed, length = 32) {
  let out = Buffer.alloc(0);
  for (let i = 0; out.length < length; i += 1) {
    out = Buffer.concat([out, createHash('sha256').update(`${seed}/${i}`).digest()]);
  }
  return out.subarray(0, length).toString('base64');
}

/** What WhatsApp puts in every media message besides the kind's own fields. */
function mediaFields(seed, mimetype, fileLength) {
  return {
    url: `https://mmg.whatsapp.net/v/t62.7118-24/${seed}.enc?ccb=11-4`,
    mimetype,
    fileSha256: bytes(`${seed}/sha`),
    fileLength,
    mediaKey: bytes(`${seed}/key`),
    fileEncSha256: bytes(`${seed}/enc`),
    directPath: `/v/t62.7118-24/${seed}.enc?ccb=11-4`,
    mediaKeyTimestamp: TS - 5,
  };
}

/** proto.Message as Baileys holds it after decoding a stanza. */
function wire(content) {
  const decoded = proto.Message.decode(proto.Message.encode(proto.Message.fromObject(content)).finish());
  assertKept(content, decoded, 'message');
  return decoded;
}

/** fromObject drops fields it does not know: a typo in a case must fail, not vanish. */
function assertKept(input, decoded, path) {
  if (input === null || typeof input !== 'object') return;
  for (const [key, value] of Object.entries(input)) {
    if (value === undefined) continue;
    const here = decoded?.[key];
    if (here === undefined || here === null) throw new Error(`${path}.${key} is not a field of the proto (or was dropped)`);
    if (Array.isArray(value)) value.forEach((v, i) => assertKept(v, here[i], `${path}.${key}[${i}]`));
    else if (typeof value === 'object') assertKept(value, here, `${path}.${key}`);
  }
}

/** A WAMessage like decodeMessageNode + cleanMessage make it. */
function waMessage({ key, content, ts = TS, pushName = 'Maria', stub, stubParams }) {
  const msg = { key, messageTimestamp: ts, pushName, broadcast: false };
  if (key.fromMe) msg.status = proto.WebMessageInfo.Status.SERVER_ACK;
  if (content !== undefined) msg.message = wire(content);
  if (stub !== undefined) {
    msg.messageStubType = stub;
    msg.messageStubParameters = stubParams;
  }
  return msg;
}

function dm({ id, fromMe = false, lid = false }) {
  return lid
    ? { remoteJid: CUSTOMER_LID, remoteJidAlt: CUSTOMER, fromMe, id, participant: undefined, addressingMode: 'lid' }
    : { remoteJid: CUSTOMER, remoteJidAlt: CUSTOMER_LID, fromMe, id, participant: undefined, addressingMode: 'pn' };
}

function inGroup({ id, fromMe = false, participant = MEMBER, participantAlt = MEMBER_LID, addressingMode = 'pn' }) {
  return { remoteJid: GROUP, fromMe, id, participant: fromMe ? ME : participant, participantAlt, addressingMode };
}

/** `media` as sidecar/media.js reports it. */
const media = {
  ok: (id, mimetype, size, ext, fileName = null) => ({ path: `${SPOOL}/${id}${ext}`, mimetype, size, file_name: fileName }),
  tooLarge: (mimetype, size, fileName = null) => ({
    error: 'too_large', mimetype, size, file_name: fileName, message: `larger than ${MAX_BYTES} bytes`,
  }),
  failed: (mimetype, size, fileName = null) => ({
    error: 'download_failed', mimetype, size, file_name: fileName, message: 'the media server answered HTTP 404',
  }),
};

/** A draft as the test compares it. */
function draft({ content, attrs = {}, attachments = [], reply = null, priv = false, poll = null, vote = null }) {
  return {
    content,
    content_attributes: attrs,
    attachments,
    reply_to: reply && { wa_message_id: reply[0], excerpt: reply[1] ?? null },
    private: priv,
    poll,
    poll_vote: vote,
  };
}
const IGNORED = { ignored: true };

function file(id, filename, contentType, size, ext) {
  return { filename, content_type: contentType, size, path: `${SPOOL}/${id}${ext}` };
}

const vcard = (lines) => ['BEGIN:VCARD', 'VERSION:3.0', ...lines, 'END:VCARD'].join('\n');

// ---------------------------------------------------------------------------------------------
// The cases. Each: name (file name), title, key, content (proto.Message object) or stub,
// optional media / chat_name / upsert / language / pushName / ts, and expected.

const cases = [];
const add = (c) => cases.push(c);

// --- text ------------------------------------------------------------------------------------
add({ name: 'plain', title: 'A plain text message', key: dm({ id: '3EB0A1B2C3D4E5F60001' }),
  content: { conversation: 'Oi, tudo bem? Queria saber o horário de vocês.' },
  expected: draft({ content: 'Oi, tudo bem? Queria saber o horário de vocês.' }) });
add({ name: 'lid_chat', title: 'A chat addressed by LID converts the same way', key: dm({ id: '3EB0A1B2C3D4E5F60002', lid: true }),
  content: { conversation: 'Oi!' }, expected: draft({ content: 'Oi!' }) });
add({ name: 'from_me', title: 'Typed on the linked phone (key.fromMe): same conversion, the job posts it outgoing',
  key: dm({ id: '3EB0A1B2C3D4E5F60003', fromMe: true }), pushName: 'Loja', upsert: 'append',
  content: { conversation: 'Bom dia! Em que posso ajudar?' }, expected: draft({ content: 'Bom dia! Em que posso ajudar?' }) });
add({ name: 'group', title: 'Group message: sender name and phone number first',
  key: inGroup({ id: '3EB0A1B2C3D4E5F60004' }), pushName: 'João', chat_name: 'Clientes VIP',
  content: { conversation: 'Alguém sabe se abre amanhã?' },
  expected: draft({ content: '**João** (+5511977776666):\nAlguém sabe se abre amanhã?' }) });
add({ name: 'group_lid', title: 'Group message addressed by LID: the phone number comes from participantAlt',
  key: inGroup({ id: '3EB0A1B2C3D4E5F60005', participant: MEMBER_LID, participantAlt: MEMBER, addressingMode: 'lid' }),
  pushName: 'João', chat_name: 'Clientes VIP', content: { conversation: 'Bom dia, grupo' },
  expected: draft({ content: '**João** (+5511977776666):\nBom dia, grupo' }) });
add({ name: 'group_lid_only', title: 'Group message with no phone number known: the name alone',
  key: inGroup({ id: '3EB0A1B2C3D4E5F60006', participant: MEMBER_LID, participantAlt: undefined, addressingMode: 'lid' }),
  pushName: 'Ana', content: { conversation: 'Oi' }, expected: draft({ content: '**Ana**:\nOi' }) });
add({ name: 'group_from_me', title: 'Group message typed on the linked phone: "Você"',
  key: inGroup({ id: '3EB0A1B2C3D4E5F60007', fromMe: true }), pushName: 'Loja', upsert: 'append',
  content: { conversation: 'Abre sim, das 9h às 18h.' }, expected: draft({ content: '**Você**:\nAbre sim, das 9h às 18h.' }) });
add({ name: 'old_message', title: 'A backlog message three hours old carries its original time (UTC)',
  key: dm({ id: '3EB0A1B2C3D4E5F60008' }), ts: TS - 3 * 3600, upsert: 'append',
  content: { conversation: 'Vocês estão abertos?' },
  expected: draft({ content: '🕓 Enviada no WhatsApp em 29/11/2025 07:15 UTC\nVocês estão abertos?' }) });
add({ name: 'old_group_en', title: 'English texts: an old group message', language: 'en',
  key: inGroup({ id: '3EB0A1B2C3D4E5F60009' }), pushName: 'João', ts: TS - 26 * 3600, upsert: 'append',
  content: { conversation: 'Any news?' },
  expected: draft({ content: '**João** (+5511977776666):\n🕓 Sent on WhatsApp at 2025-11-28 08:15 UTC\nAny news?' }) });
add({ name: 'edit_wrapper_plain', title: 'An editedMessage wrapper around plain content (Baileys messages.update shape): key.id is the original',
  key: dm({ id: '3EB0A1B2C3D4E5F6000A' }),
  content: { editedMessage: { message: { conversation: 'Quero 3 unidades, não 2' } } },
  expected: draft({ content: '✏️ Mensagem editada:\nQuero 3 unidades, não 2', reply: ['3EB0A1B2C3D4E5F6000A'] }) });

add({ name: 'link_preview', title: 'A link with its preview: title and description once, the URL is already in the text',
  key: dm({ id: '3EB0B1B2C3D4E5F60001' }),
  content: { extendedTextMessage: {
    text: 'Vi este aqui: https://loja.example.com/p/123', matchedText: 'https://loja.example.com/p/123',
    title: 'Tênis Corrida X — Loja Example', description: 'Leve, confortável e em promoção.',
    previewType: 0, jpegThumbnail: bytes('thumb', 48), inviteLinkGroupTypeV2: 0,
  }, messageContextInfo: { messageSecret: bytes('secret-link') } },
  expected: draft({ content: 'Vi este aqui: https://loja.example.com/p/123\n\n🔗 Tênis Corrida X — Loja Example\nLeve, confortável e em promoção.' }) });
add({ name: 'reply', title: 'A reply: reply_to the quoted message, with a short excerpt of it',
  key: dm({ id: '3EB0B1B2C3D4E5F60002' }),
  content: { extendedTextMessage: { text: 'Esse mesmo!', contextInfo: {
    stanzaId: '3EB0FFEE00112233AA01', participant: ME, quotedMessage: { conversation: 'Seria o modelo azul?' },
  } } },
  expected: draft({ content: 'Esse mesmo!', reply: ['3EB0FFEE00112233AA01', 'Seria o modelo azul?'] }) });
add({ name: 'reply_without_quote', title: 'A reply whose quotedMessage is absent: reply_to without excerpt',
  key: dm({ id: '3EB0B1B2C3D4E5F60003' }),
  content: { extendedTextMessage: { text: 'Isso', contextInfo: { stanzaId: '3EB0FFEE00112233AA02', participant: ME } } },
  expected: draft({ content: 'Isso', reply: ['3EB0FFEE00112233AA02'] }) });
add({ name: 'reply_to_photo', title: 'A reply to a photo without caption: the excerpt names the kind',
  key: dm({ id: '3EB0B1B2C3D4E5F60004' }),
  content: { extendedTextMessage: { text: 'Quanto custa?', contextInfo: {
    stanzaId: '3EB0FFEE00112233AA03', participant: ME,
    quotedMessage: { imageMessage: { ...mediaFields('quoted-photo', 'image/jpeg', 52011), height: 1280, width: 960 } },
  } } },
  expected: draft({ content: 'Quanto custa?', reply: ['3EB0FFEE00112233AA03', '📷 Foto'] }) });
add({ name: 'reply_long_quote', title: 'A reply to a long message: the excerpt is one line of at most 100 characters',
  key: dm({ id: '3EB0B1B2C3D4E5F60005' }),
  content: { extendedTextMessage: { text: 'Ok, obrigado', contextInfo: {
    stanzaId: '3EB0FFEE00112233AA04', participant: ME, quotedMessage: { extendedTextMessage: {
      text: 'Nosso horário de funcionamento é de segunda a sexta,\ndas 9h às 18h, e aos sábados das 9h às 13h. Domingos e feriados fechado.',
    } },
  } } },
  expected: draft({ content: 'Ok, obrigado', reply: ['3EB0FFEE00112233AA04',
    'Nosso horário de funcionamento é de segunda a sexta, das 9h às 18h, e aos sábados das 9h às 13h.…'] }) });
add({ name: 'forwarded', title: 'A forwarded message is marked once',
  key: dm({ id: '3EB0B1B2C3D4E5F60006' }),
  content: { extendedTextMessage: { text: 'Promoção de Black Friday!', contextInfo: { isForwarded: true, forwardingScore: 1 } } },
  expected: draft({ content: '↪️ Encaminhada\nPromoção de Black Friday!' }) });
add({ name: 'forwarded_many', title: 'A message forwarded many times (forwardingScore >= 5)',
  key: dm({ id: '3EB0B1B2C3D4E5F60007' }),
  content: { extendedTextMessage: { text: 'Corrente: repasse!', contextInfo: { isForwarded: true, forwardingScore: 7 } } },
  expected: draft({ content: '↪️ Encaminhada com frequência\nCorrente: repasse!' }) });
add({ name: 'ephemeral', title: 'A disappearing message: the ephemeralMessage wrapper is opened',
  key: dm({ id: '3EB0B1B2C3D4E5F60008' }),
  content: { ephemeralMessage: { message: { extendedTextMessage: { text: 'Mensagem temporária', contextInfo: { expiration: 604800 } } } } },
  expected: draft({ content: 'Mensagem temporária' }) });
add({ name: 'group_reply_forwarded', title: 'Group, forwarded and a reply together: header lines in order, reply_to set',
  key: inGroup({ id: '3EB0B1B2C3D4E5F60009' }), pushName: 'João', chat_name: 'Clientes VIP',
  content: { extendedTextMessage: { text: 'Olhem isso', contextInfo: {
    stanzaId: '3EB0FFEE00112233AA05', participant: MEMBER, quotedMessage: { conversation: 'Alguma novidade?' },
    isForwarded: true, forwardingScore: 2,
  } } },
  expected: draft({ content: '**João** (+5511977776666):\n↪️ Encaminhada\nOlhem isso', reply: ['3EB0FFEE00112233AA05', 'Alguma novidade?'] }) });

// --- media -----------------------------------------------------------------------------------
{
  const id = '3EB0C1B2C3D4E5F60001';
  add({ name: 'ok_caption', title: 'A photo with caption: one attachment, the caption as content', key: dm({ id }),
    content: { imageMessage: { ...mediaFields('photo1', 'image/jpeg', 48213), caption: 'Chegou quebrado 😕', height: 1600, width: 1200, jpegThumbnail: bytes('t1', 40) } },
    media: media.ok(id, 'image/jpeg', 48213, '.jpg'),
    expected: draft({ content: 'Chegou quebrado 😕', attachments: [file(id, `image-${id}.jpg`, 'image/jpeg', 48213, '.jpg')] }) });
}
{
  const id = '3EB0C1B2C3D4E5F60002';
  add({ name: 'ok_no_caption', title: 'A photo without caption: the attachment alone', key: dm({ id }),
    content: { imageMessage: { ...mediaFields('photo2', 'image/jpeg', 30111), height: 800, width: 600 } },
    media: media.ok(id, 'image/jpeg', 30111, '.jpg'),
    expected: draft({ content: '', attachments: [file(id, `image-${id}.jpg`, 'image/jpeg', 30111, '.jpg')] }) });
}
add({ name: 'too_large', title: 'A photo over the size limit: its name and size as text, caption kept', key: dm({ id: '3EB0C1B2C3D4E5F60003' }),
  content: { imageMessage: { ...mediaFields('photo3', 'image/png', 20971520), caption: 'planta baixa' } },
  media: media.tooLarge('image/png', 20971520),
  expected: draft({ content: '[📷 Foto não baixado: image-3EB0C1B2C3D4E5F60003.png (20 MB) passa do limite de tamanho. Veja no celular.]\nplanta baixa' }) });
add({ name: 'download_failed', title: 'A photo that could not be downloaded', key: dm({ id: '3EB0C1B2C3D4E5F60004' }),
  content: { imageMessage: mediaFields('photo4', 'image/jpeg', 2621440) },
  media: media.failed('image/jpeg', 2621440),
  expected: draft({ content: '[📷 Foto: não foi possível baixar image-3EB0C1B2C3D4E5F60004.jpg (2,5 MB) do WhatsApp. Veja no celular.]' }) });
add({ name: 'no_media_info', title: 'A photo without any media info from the sidecar: a placeholder naming the kind', key: dm({ id: '3EB0C1B2C3D4E5F60005' }),
  content: { imageMessage: { ...mediaFields('photo5', 'image/jpeg', 1000), caption: 'segue' } },
  expected: draft({ content: '[📷 Foto: o arquivo não chegou até aqui. Veja no celular.]\nsegue' }) });
{
  const id = '3EB0C1B2C3D4E5F60006';
  add({ name: 'view_once', title: 'A view-once photo: the viewOnceMessageV2 wrapper is opened', key: dm({ id }),
    content: { viewOnceMessageV2: { message: { imageMessage: { ...mediaFields('photo6', 'image/jpeg', 40000), viewOnce: true, caption: 'só uma vez' } } } },
    media: media.ok(id, 'image/jpeg', 40000, '.jpg'),
    expected: draft({ content: 'só uma vez', attachments: [file(id, `image-${id}.jpg`, 'image/jpeg', 40000, '.jpg')] }) });
}
{
  const id = '3EB0C1B2C3D4E5F60007';
  add({ name: 'group', title: 'A photo in a group: sender line, then the caption', key: inGroup({ id }), pushName: 'João', chat_name: 'Clientes VIP',
    content: { imageMessage: { ...mediaFields('photo7', 'image/jpeg', 5000), caption: 'meu pedido' } },
    media: media.ok(id, 'image/jpeg', 5000, '.jpg'),
    expected: draft({ content: '**João** (+5511977776666):\nmeu pedido', attachments: [file(id, `image-${id}.jpg`, 'image/jpeg', 5000, '.jpg')] }) });
}
{
  const id = '3EB0C2B2C3D4E5F60001';
  add({ name: 'ok_caption', title: 'A video with caption', key: dm({ id }),
    content: { videoMessage: { ...mediaFields('video1', 'video/mp4', 3145728), seconds: 12, caption: 'olha o barulho', height: 720, width: 1280 } },
    media: media.ok(id, 'video/mp4', 3145728, '.mp4'),
    expected: draft({ content: 'olha o barulho', attachments: [file(id, `video-${id}.mp4`, 'video/mp4', 3145728, '.mp4')] }) });
}
{
  const id = '3EB0C2B2C3D4E5F60002';
  add({ name: 'gif', title: 'A GIF (videoMessage gifPlayback): an mp4 named gif-…', key: dm({ id }),
    content: { videoMessage: { ...mediaFields('gif1', 'video/mp4', 250000), seconds: 2, gifPlayback: true, gifAttribution: 1 } },
    media: media.ok(id, 'video/mp4', 250000, '.mp4'),
    expected: draft({ content: '', attachments: [file(id, `gif-${id}.mp4`, 'video/mp4', 250000, '.mp4')] }) });
}
add({ name: 'too_large', title: 'A video over the size limit', key: dm({ id: '3EB0C2B2C3D4E5F60003' }),
  content: { videoMessage: { ...mediaFields('video3', 'video/mp4', 104857600), seconds: 300 } },
  media: media.tooLarge('video/mp4', 104857600),
  expected: draft({ content: '[🎥 Vídeo não baixado: video-3EB0C2B2C3D4E5F60003.mp4 (100 MB) passa do limite de tamanho. Veja no celular.]' }) });
add({ name: 'download_failed_gif', title: 'A GIF that could not be downloaded: named as a GIF', key: dm({ id: '3EB0C2B2C3D4E5F60004' }),
  content: { videoMessage: { ...mediaFields('gif4', 'video/mp4', 900), gifPlayback: true } },
  media: media.failed('video/mp4', 900),
  expected: draft({ content: '[🎞️ GIF animado: não foi possível baixar gif-3EB0C2B2C3D4E5F60004.mp4 (900 B) do WhatsApp. Veja no celular.]' }) });
{
  const id = '3EB0C3B2C3D4E5F60001';
  add({ name: 'ok', title: 'A round video message (ptvMessage)', key: dm({ id }),
    content: { ptvMessage: { ...mediaFields('ptv1', 'video/mp4', 800000), seconds: 9 } },
    media: media.ok(id, 'video/mp4', 800000, '.mp4'),
    expected: draft({ content: '', attachments: [file(id, `video-note-${id}.mp4`, 'video/mp4', 800000, '.mp4')] }) });
}
{
  const id = '3EB0C4B2C3D4E5F60001';
  add({ name: 'voice_note', title: 'A voice note (audioMessage ptt): marked as a voice note', key: dm({ id }),
    content: { audioMessage: { ...mediaFields('ptt1', 'audio/ogg; codecs=opus', 18000), seconds: 7, ptt: true, waveform: bytes('wave', 64) } },
    media: media.ok(id, 'audio/ogg; codecs=opus', 18000, '.ogg'),
    expected: draft({ content: '🎤 Mensagem de voz', attachments: [file(id, `voice-${id}.ogg`, 'audio/ogg; codecs=opus', 18000, '.ogg')] }) });
}
{
  const id = '3EB0C4B2C3D4E5F60002';
  add({ name: 'audio', title: 'An audio file (not a voice note): the attachment alone', key: dm({ id }),
    content: { audioMessage: { ...mediaFields('mp3', 'audio/mpeg', 4200000), seconds: 210, ptt: false } },
    media: media.ok(id, 'audio/mpeg', 4200000, '.mp3'),
    expected: draft({ content: '', attachments: [file(id, `audio-${id}.mp3`, 'audio/mpeg', 4200000, '.mp3')] }) });
}
add({ name: 'voice_note_download_failed', title: 'A voice note that could not be downloaded', key: dm({ id: '3EB0C4B2C3D4E5F60003' }),
  content: { audioMessage: { ...mediaFields('ptt3', 'audio/ogg; codecs=opus', 12345), seconds: 5, ptt: true } },
  media: media.failed('audio/ogg; codecs=opus', 12345),
  expected: draft({ content: '[🎤 Mensagem de voz: não foi possível baixar voice-3EB0C4B2C3D4E5F60003.ogg (12 KB) do WhatsApp. Veja no celular.]' }) });
add({ name: 'voice_note_too_large', title: 'A voice note over the size limit', key: dm({ id: '3EB0C4B2C3D4E5F60004' }),
  content: { audioMessage: { ...mediaFields('ptt4', 'audio/ogg; codecs=opus', 17825792), seconds: 3000, ptt: true } },
  media: media.tooLarge('audio/ogg; codecs=opus', 17825792),
  expected: draft({ content: '[🎤 Mensagem de voz não baixado: voice-3EB0C4B2C3D4E5F60004.ogg (17 MB) passa do limite de tamanho. Veja no celular.]' }) });
{
  const id = '3EB0C5B2C3D4E5F60001';
  const name = 'Orçamento 2025.pdf';
  add({ name: 'ok', title: 'A document: its file name kept', key: dm({ id }),
    content: { documentMessage: { ...mediaFields('doc1', 'application/pdf', 182044), title: 'Orçamento 2025', fileName: name, pageCount: 3 } },
    media: media.ok(id, 'application/pdf', 182044, '.pdf', name),
    expected: draft({ content: '', attachments: [file(id, name, 'application/pdf', 182044, '.pdf')] }) });
}
{
  const id = '3EB0C5B2C3D4E5F60002';
  const name = 'contrato.docx';
  const mime = 'application/vnd.openxmlformats-officedocument.wordprocessingml.document';
  add({ name: 'with_caption', title: 'A document with caption (documentWithCaptionMessage unwrapped)', key: dm({ id }),
    content: { documentWithCaptionMessage: { message: { documentMessage: { ...mediaFields('doc2', mime, 50311), fileName: name, caption: 'Segue assinado' } } } },
    media: media.ok(id, mime, 50311, '.docx', name),
    expected: draft({ content: 'Segue assinado', attachments: [file(id, name, mime, 50311, '.docx')] }) });
}
add({ name: 'too_large', title: 'A document over the size limit: its own name and size', key: dm({ id: '3EB0C5B2C3D4E5F60003' }),
  content: { documentMessage: { ...mediaFields('doc3', 'application/zip', 12897484), fileName: 'fotos-obra.zip' } },
  media: media.tooLarge('application/zip', 12897484, 'fotos-obra.zip'),
  expected: draft({ content: '[📄 Documento não baixado: fotos-obra.zip (12 MB) passa do limite de tamanho. Veja no celular.]' }) });
add({ name: 'download_failed', title: 'A document that could not be downloaded, caption kept', key: dm({ id: '3EB0C5B2C3D4E5F60004' }),
  content: { documentWithCaptionMessage: { message: { documentMessage: { ...mediaFields('doc4', 'application/pdf', 1048576), fileName: 'boleto.pdf', caption: 'boleto de novembro' } } } },
  media: media.failed('application/pdf', 1048576, 'boleto.pdf'),
  expected: draft({ content: '[📄 Documento: não foi possível baixar boleto.pdf (1,0 MB) do WhatsApp. Veja no celular.]\nboleto de novembro' }) });
{
  const id = '3EB0C5B2C3D4E5F60005';
  add({ name: 'unsafe_file_name', title: 'A document whose file name is a path: separators replaced', key: dm({ id }),
    content: { documentMessage: { ...mediaFields('doc5', 'text/plain', 12), fileName: '../../etc/passwd' } },
    media: media.ok(id, 'text/plain', 12, '.txt', '../../etc/passwd'),
    expected: draft({ content: '', attachments: [file(id, '_.._etc_passwd', 'text/plain', 12, '.txt')] }) });
}
{
  const id = '3EB0C6B2C3D4E5F60001';
  add({ name: 'ok', title: 'A sticker: the webp as attachment', key: dm({ id }),
    content: { stickerMessage: { ...mediaFields('stk1', 'image/webp', 21000), height: 512, width: 512, isAnimated: false } },
    media: media.ok(id, 'image/webp', 21000, '.webp'),
    expected: draft({ content: '', attachments: [file(id, `sticker-${id}.webp`, 'image/webp', 21000, '.webp')] }) });
}
{
  const id = '3EB0C6B2C3D4E5F60002';
  add({ name: 'animated', title: 'An animated sticker: the animated webp as attachment', key: dm({ id }),
    content: { stickerMessage: { ...mediaFields('stk2', 'image/webp', 98000), height: 512, width: 512, isAnimated: true } },
    media: media.ok(id, 'image/webp', 98000, '.webp'),
    expected: draft({ content: '', attachments: [file(id, `sticker-${id}.webp`, 'image/webp', 98000, '.webp')] }) });
}
add({ name: 'no_media_info', title: 'An animated sticker without media info', key: dm({ id: '3EB0C6B2C3D4E5F60003' }),
  content: { stickerMessage: { ...mediaFields('stk3', 'image/webp', 98000), isAnimated: true } },
  expected: draft({ content: '[✨ Figurinha animada: o arquivo não chegou até aqui. Veja no celular.]' }) });
add({ name: 'lottie', title: 'A Lottie sticker: Baileys does not open the wrapper, Ponte does (no media from the sidecar)',
  key: dm({ id: '3EB0C6B2C3D4E5F60004' }),
  content: { lottieStickerMessage: { message: { stickerMessage: { ...mediaFields('stk4', 'application/was', 4000), isAnimated: true, isLottie: true } } } },
  expected: draft({ content: '[✨ Figurinha animada: o arquivo não chegou até aqui. Veja no celular.]' }) });

// --- location and contacts -------------------------------------------------------------------
add({ name: 'pin', title: 'A dropped pin: map link with 5 decimals', key: dm({ id: '3EB0D1B2C3D4E5F60001' }),
  content: { locationMessage: { degreesLatitude: -23.5505199, degreesLongitude: -46.6333094, jpegThumbnail: bytes('map', 40) } },
  expected: draft({ content: '📍 Localização\nhttps://maps.google.com/?q=-23.55052,-46.63331' }) });
add({ name: 'place', title: 'A place: name, address and its own url', key: dm({ id: '3EB0D1B2C3D4E5F60002' }),
  content: { locationMessage: { degreesLatitude: -22.9519, degreesLongitude: -43.2105, name: 'Cristo Redentor',
    address: 'Parque Nacional da Tijuca, Rio de Janeiro - RJ', url: 'https://maps.google.com/maps?cid=1234567890' } },
  expected: draft({ content: '📍 Localização: Cristo Redentor\nParque Nacional da Tijuca, Rio de Janeiro - RJ\nhttps://maps.google.com/maps?cid=1234567890' }) });
add({ name: 'live', title: 'A live location: shown once, with its caption', key: dm({ id: '3EB0D2B2C3D4E5F60001' }),
  content: { liveLocationMessage: { degreesLatitude: -19.9166813, degreesLongitude: -43.9344931, accuracyInMeters: 12,
    caption: 'Estou chegando', sequenceNumber: 1764411300000, jpegThumbnail: bytes('live', 40) } },
  expected: draft({ content: '📍 Localização em tempo real\nEstou chegando\nhttps://maps.google.com/?q=-19.91668,-43.93449' }) });
add({ name: 'one', title: 'A contact card: name and the TEL numbers, waid as a wa.me link', key: dm({ id: '3EB0D3B2C3D4E5F60001' }),
  content: { contactMessage: { displayName: 'Ana Souza', vcard: vcard([
    'N:Souza;Ana;;;', 'FN:Ana Souza', 'item1.TEL;waid=5511966665555:+55 11 96666-5555', 'item1.X-ABLabel:Celular',
    'TEL;type=WORK:+55 11 3333-4444']) } },
  expected: draft({ content: '👤 Contato: Ana Souza\n+55 11 96666-5555 (wa.me/5511966665555)\n+55 11 3333-4444' }) });
add({ name: 'no_phone', title: 'A contact card without numbers', key: dm({ id: '3EB0D3B2C3D4E5F60002' }),
  content: { contactMessage: { vcard: vcard(['N:Lima;Carlos;;;', 'EMAIL:carlos@example.com']) } },
  expected: draft({ content: '👤 Contato: Carlos Lima\n(sem número)' }) });
add({ name: 'two', title: 'Several contact cards', key: dm({ id: '3EB0D4B2C3D4E5F60001' }),
  content: { contactsArrayMessage: { displayName: '2 contatos', contacts: [
    { displayName: 'Ana Souza', vcard: vcard(['FN:Ana Souza', 'TEL;type=CELL;type=VOICE;waid=5511966665555:+55 11 96666-5555']) },
    { displayName: 'Oficina do Zé', vcard: vcard(['FN:Oficina do Zé', 'ORG:Oficina do Zé;', 'TEL;type=WORK:+55 31 3222-1111']) },
  ] } },
  expected: draft({ content: '👥 2 contatos\n\n👤 Contato: Ana Souza\n+55 11 96666-5555 (wa.me/5511966665555)\n\n👤 Contato: Oficina do Zé\n+55 31 3222-1111' }) });

// --- reactions, edits, deletes ---------------------------------------------------------------
// A reaction's key is turned to our point of view by Baileys' cleanMessage; a protocolMessage's key
// is not: the customer's edit or delete names their own message as {remoteJid: us, fromMe: true}.
add({ name: 'emoji', title: 'A reaction: the emoji, as a reply to its target', key: dm({ id: '3EB0E1B2C3D4E5F60001' }),
  content: { reactionMessage: { key: { remoteJid: CUSTOMER, fromMe: true, id: '3EB0FFEE00112233AA10' }, text: '👍', senderTimestampMs: TS * 1000 } },
  expected: draft({ content: '👍', reply: ['3EB0FFEE00112233AA10'] }) });
add({ name: 'removed', title: 'A reaction taken back (empty text)', key: dm({ id: '3EB0E1B2C3D4E5F60002' }),
  content: { reactionMessage: { key: { remoteJid: CUSTOMER, fromMe: true, id: '3EB0FFEE00112233AA10' }, text: '', senderTimestampMs: TS * 1000 + 5000 } },
  expected: draft({ content: '(reação removida)', reply: ['3EB0FFEE00112233AA10'] }) });
add({ name: 'group', title: 'A reaction in a group: who reacted, then the emoji', key: inGroup({ id: '3EB0E1B2C3D4E5F60003' }), pushName: 'João',
  content: { reactionMessage: { key: { remoteJid: GROUP, fromMe: false, id: '3EB0FFEE00112233AA11', participant: MEMBER_LID }, text: '❤️', senderTimestampMs: TS * 1000 } },
  expected: draft({ content: '**João** (+5511977776666):\n❤️', reply: ['3EB0FFEE00112233AA11'] }) });
add({ name: 'revoke', title: 'Deleted for everyone: a private note on the original, which stays', key: dm({ id: '3EB0E2B2C3D4E5F60001' }),
  content: { protocolMessage: { key: { remoteJid: ME, fromMe: true, id: '3EB0FFEE00112233AA20' }, type: 'REVOKE' } },
  expected: draft({ content: '🗑️ O cliente apagou esta mensagem para todos no WhatsApp. O conteúdo original continua registrado aqui.',
    reply: ['3EB0FFEE00112233AA20'], priv: true }) });
add({ name: 'revoke_from_me', title: 'Deleted for everyone from the linked phone', key: dm({ id: '3EB0E2B2C3D4E5F60002', fromMe: true }), pushName: 'Loja',
  upsert: 'append',
  content: { protocolMessage: { key: { remoteJid: CUSTOMER, fromMe: true, id: '3EB0FFEE00112233AA21' }, type: 'REVOKE' } },
  expected: draft({ content: '🗑️ Esta mensagem foi apagada para todos no WhatsApp pelo celular conectado. O conteúdo original continua registrado aqui.',
    reply: ['3EB0FFEE00112233AA21'], priv: true }) });
add({ name: 'edit', title: 'An edit (protocolMessage MESSAGE_EDIT): a reply to the original, marked edited', key: dm({ id: '3EB0E3B2C3D4E5F60001' }),
  content: { protocolMessage: { key: { remoteJid: ME, fromMe: true, id: '3EB0FFEE00112233AA30' }, type: 'MESSAGE_EDIT',
    editedMessage: { conversation: 'Quero o tamanho 42, não 41' }, timestampMs: TS * 1000 } },
  expected: draft({ content: '✏️ Mensagem editada:\nQuero o tamanho 42, não 41', reply: ['3EB0FFEE00112233AA30'] }) });
add({ name: 'edit_wrapped', title: 'An edit inside an editedMessage wrapper (the shape WhatsApp sends)', key: dm({ id: '3EB0E3B2C3D4E5F60002' }),
  content: { editedMessage: { message: { protocolMessage: { key: { remoteJid: ME, fromMe: true, id: '3EB0FFEE00112233AA31' },
    type: 'MESSAGE_EDIT', editedMessage: { extendedTextMessage: { text: 'Endereço: Rua das Flores, 120' } }, timestampMs: TS * 1000 } } },
  messageContextInfo: { messageSecret: bytes('edit-secret') } },
  expected: draft({ content: '✏️ Mensagem editada:\nEndereço: Rua das Flores, 120', reply: ['3EB0FFEE00112233AA31'] }) });
add({ name: 'edit_caption', title: 'An edited caption', key: dm({ id: '3EB0E3B2C3D4E5F60003' }),
  content: { protocolMessage: { key: { remoteJid: ME, fromMe: true, id: '3EB0FFEE00112233AA32' }, type: 'MESSAGE_EDIT',
    editedMessage: { imageMessage: { caption: 'foto da nota fiscal' } }, timestampMs: TS * 1000 } },
  expected: draft({ content: '✏️ Mensagem editada:\nfoto da nota fiscal', reply: ['3EB0FFEE00112233AA32'] }) });
add({ name: 'ephemeral_setting', title: 'Other protocolMessage types (disappearing-messages setting) are skipped', key: dm({ id: '3EB0E4B2C3D4E5F60001' }),
  content: { protocolMessage: { type: 'EPHEMERAL_SETTING', ephemeralExpiration: 604800, ephemeralSettingTimestamp: TS } },
  expected: IGNORED });
add({ name: 'app_state_key_share', title: 'App-state key share from the phone is skipped', key: dm({ id: '3EB0E4B2C3D4E5F60002', fromMe: true }), pushName: 'Loja',
  content: { protocolMessage: { type: 'APP_STATE_SYNC_KEY_SHARE', appStateSyncKeyShare: { keys: [{ keyId: { keyId: bytes('kid', 6) },
    keyData: { keyData: bytes('kdata'), timestamp: TS * 1000 } }] } } },
  expected: IGNORED });

// --- polls -----------------------------------------------------------------------------------
const SECRET = bytes('poll-secret');
add({ name: 'single_choice', title: 'A single-choice poll (V3): question, numbered options, secret kept', key: dm({ id: '3EB0F1B2C3D4E5F60001' }),
  content: { messageContextInfo: { messageSecret: SECRET }, pollCreationMessageV3: { name: 'Qual horário prefere?',
    options: [{ optionName: 'Manhã' }, { optionName: 'Tarde' }, { optionName: 'Noite' }], selectableOptionsCount: 1 } },
  expected: draft({ content: '📊 Enquete: Qual horário prefere?\n1. Manhã\n2. Tarde\n3. Noite',
    poll: { question: 'Qual horário prefere?', options: ['Manhã', 'Tarde', 'Noite'], secret_b64: SECRET, selectable: 1 } }) });
add({ name: 'multiple_choice', title: 'A multiple-choice poll (pollCreationMessage, selectable 0 = any)', key: dm({ id: '3EB0F1B2C3D4E5F60002' }),
  content: { messageContextInfo: { messageSecret: SECRET }, pollCreationMessage: { name: 'Quais sabores?',
    options: [{ optionName: 'Chocolate' }, { optionName: 'Morango' }], selectableOptionsCount: 0 } },
  expected: draft({ content: '📊 Enquete: Quais sabores?\n1. Chocolate\n2. Morango\n(várias respostas permitidas)',
    poll: { question: 'Quais sabores?', options: ['Chocolate', 'Morango'], secret_b64: SECRET, selectable: 0 } }) });
add({ name: 'announcement', title: 'A poll for an announcement group (V2), up to 2 answers', key: inGroup({ id: '3EB0F1B2C3D4E5F60003' }), pushName: 'João',
  content: { messageContextInfo: { messageSecret: SECRET }, pollCreationMessageV2: { name: 'Próximo encontro?',
    options: [{ optionName: 'Sábado' }, { optionName: 'Domingo' }, { optionName: 'Feriado' }], selectableOptionsCount: 2 } },
  expected: draft({ content: '**João** (+5511977776666):\n📊 Enquete: Próximo encontro?\n1. Sábado\n2. Domingo\n3. Feriado\n(até 2 respostas)',
    poll: { question: 'Próximo encontro?', options: ['Sábado', 'Domingo', 'Feriado'], secret_b64: SECRET, selectable: 2 } }) });
add({ name: 'future_proof', title: 'pollCreationMessageV4 (a FutureProofMessage around a poll)', key: dm({ id: '3EB0F1B2C3D4E5F60004' }),
  content: { messageContextInfo: { messageSecret: SECRET }, pollCreationMessageV4: { message: { pollCreationMessage: { name: 'Sim ou não?',
    options: [{ optionName: 'Sim' }, { optionName: 'Não' }], selectableOptionsCount: 1 } } } },
  expected: draft({ content: '📊 Enquete: Sim ou não?\n1. Sim\n2. Não',
    poll: { question: 'Sim ou não?', options: ['Sim', 'Não'], secret_b64: SECRET, selectable: 1 } }) });
add({ name: 'quiz', title: 'pollCreationMessageV5', key: dm({ id: '3EB0F1B2C3D4E5F60005' }),
  content: { messageContextInfo: { messageSecret: SECRET }, pollCreationMessageV5: { name: 'Capital do Brasil?',
    options: [{ optionName: 'Brasília' }, { optionName: 'Rio de Janeiro' }], selectableOptionsCount: 1, pollType: 'QUIZ' } },
  expected: draft({ content: '📊 Enquete: Capital do Brasil?\n1. Brasília\n2. Rio de Janeiro',
    poll: { question: 'Capital do Brasil?', options: ['Brasília', 'Rio de Janeiro'], secret_b64: SECRET, selectable: 1 } }) });
const PAYLOAD = bytes('vote-payload', 50);
const IV = bytes('vote-iv', 12);
add({ name: 'vote', title: 'A vote on our poll: encrypted, empty content, for the job to decrypt and tally', key: dm({ id: '3EB0F2B2C3D4E5F60001' }),
  content: { pollUpdateMessage: { pollCreationMessageKey: { remoteJid: CUSTOMER, fromMe: true, id: '3EB0F1B2C3D4E5F60001' },
    vote: { encPayload: PAYLOAD, encIv: IV }, senderTimestampMs: TS * 1000 }, messageContextInfo: { messageSecret: bytes('vote-secret') } },
  expected: draft({ content: '', vote: { poll_wa_message_id: '3EB0F1B2C3D4E5F60001', poll_creator_jid: null,
    voter_jid: CUSTOMER, enc_payload_b64: PAYLOAD, enc_iv_b64: IV, voter_is_me: false } }) });
add({ name: 'vote_group', title: "A vote in a group on a member's poll (LID addressing: the phone number is preferred)",
  key: inGroup({ id: '3EB0F2B2C3D4E5F60002', participant: MEMBER_LID, participantAlt: MEMBER, addressingMode: 'lid' }), pushName: 'João',
  content: { pollUpdateMessage: { pollCreationMessageKey: { remoteJid: GROUP, fromMe: false, id: '3EB0F1B2C3D4E5F60003', participant: '5511955554444@s.whatsapp.net' },
    vote: { encPayload: PAYLOAD, encIv: IV }, senderTimestampMs: TS * 1000 } },
  expected: draft({ content: '', vote: { poll_wa_message_id: '3EB0F1B2C3D4E5F60003', poll_creator_jid: '5511955554444@s.whatsapp.net',
    voter_jid: MEMBER, enc_payload_b64: PAYLOAD, enc_iv_b64: IV, voter_is_me: false } }) });
add({ name: 'vote_from_me', title: 'A vote cast on the linked phone', key: dm({ id: '3EB0F2B2C3D4E5F60003', fromMe: true }), pushName: 'Loja', upsert: 'append',
  content: { pollUpdateMessage: { pollCreationMessageKey: { remoteJid: CUSTOMER, fromMe: false, id: '3EB0F1B2C3D4E5F60099' },
    vote: { encPayload: PAYLOAD, encIv: IV }, senderTimestampMs: TS * 1000 } },
  expected: draft({ content: '', vote: { poll_wa_message_id: '3EB0F1B2C3D4E5F60099', poll_creator_jid: CUSTOMER,
    voter_jid: '', enc_payload_b64: PAYLOAD, enc_iv_b64: IV, voter_is_me: true } }) });

// --- business / interactive ------------------------------------------------------------------
add({ name: 'selected', title: 'A tapped button: its text', key: dm({ id: '3EB0A2B2C3D4E5F60001' }),
  content: { buttonsResponseMessage: { selectedButtonId: 'btn-2', selectedDisplayText: 'Falar com atendente', type: 'DISPLAY_TEXT',
    contextInfo: { stanzaId: '3EB0FFEE00112233AA40', participant: ME, quotedMessage: { buttonsMessage: { contentText: 'Como podemos ajudar?' } } } } },
  expected: draft({ content: 'Falar com atendente', reply: ['3EB0FFEE00112233AA40', 'Como podemos ajudar?'] }) });
add({ name: 'selected', title: 'A chosen list row: its title and description', key: dm({ id: '3EB0A2B2C3D4E5F60002' }),
  content: { listResponseMessage: { title: 'Segunda via de boleto', description: 'Receba o boleto por aqui', listType: 'SINGLE_SELECT',
    singleSelectReply: { selectedRowId: 'row-boleto' } } },
  expected: draft({ content: 'Segunda via de boleto\nReceba o boleto por aqui' }) });
add({ name: 'selected', title: 'A tapped template button', key: dm({ id: '3EB0A2B2C3D4E5F60003' }),
  content: { templateButtonReplyMessage: { selectedId: 'confirm', selectedDisplayText: 'Confirmar pedido', selectedIndex: 0 } },
  expected: draft({ content: 'Confirmar pedido' }) });
add({ name: 'native_flow', title: 'An interactive (native flow) response: its body text', key: dm({ id: '3EB0A2B2C3D4E5F60004' }),
  content: { interactiveResponseMessage: { body: { text: 'Quero agendar uma visita', format: 'DEFAULT' },
    nativeFlowResponseMessage: { name: 'quick_reply', paramsJson: '{"id":"agendar"}', version: 1 } } },
  expected: draft({ content: 'Quero agendar uma visita' }) });
add({ name: 'offer', title: 'A message with buttons: text, footer and the choices', key: dm({ id: '3EB0A2B2C3D4E5F60005' }),
  content: { buttonsMessage: { contentText: 'Seu pedido saiu para entrega.', footerText: 'Loja Example', headerType: 'EMPTY',
    buttons: [{ buttonId: 'ok', buttonText: { displayText: 'Recebi' }, type: 'RESPONSE' },
      { buttonId: 'help', buttonText: { displayText: 'Preciso de ajuda' }, type: 'RESPONSE' }] } },
  expected: draft({ content: 'Seu pedido saiu para entrega.\nLoja Example\n• Recebi\n• Preciso de ajuda' }) });
add({ name: 'offer', title: 'A list message: title, description, sections and rows', key: dm({ id: '3EB0A2B2C3D4E5F60006' }),
  content: { listMessage: { title: 'Cardápio', description: 'Escolha uma opção', buttonText: 'Ver opções', listType: 'SINGLE_SELECT',
    sections: [{ title: 'Pizzas', rows: [{ title: 'Margherita', description: 'R$ 45', rowId: 'p1' }, { title: 'Calabresa', rowId: 'p2' }] }],
    footerText: 'Entrega grátis' } },
  expected: draft({ content: 'Cardápio\nEscolha uma opção\nPizzas\n• Margherita — R$ 45\n• Calabresa\nEntrega grátis' }) });
add({ name: 'hydrated', title: 'A template message: title, text, footer and buttons', key: dm({ id: '3EB0A2B2C3D4E5F60007' }),
  content: { templateMessage: { hydratedTemplate: { hydratedTitleText: 'Pedido #1234', hydratedContentText: 'Pagamento aprovado.',
    hydratedFooterText: 'Obrigado!', hydratedButtons: [
      { index: 0, urlButton: { displayText: 'Acompanhar', url: 'https://loja.example.com/p/1234' } },
      { index: 1, quickReplyButton: { displayText: 'Falar com a loja', id: 'talk' } }] } } },
  expected: draft({ content: 'Pedido #1234\nPagamento aprovado.\nObrigado!\n• Acompanhar — https://loja.example.com/p/1234\n• Falar com a loja' }) });
add({ name: 'body', title: 'An interactive message: header, body and footer', key: dm({ id: '3EB0A2B2C3D4E5F60008' }),
  content: { interactiveMessage: { header: { title: 'Oferta', hasMediaAttachment: false }, body: { text: '20% de desconto hoje' },
    footer: { text: 'Válido até 23h59' }, nativeFlowMessage: { buttons: [{ name: 'quick_reply', buttonParamsJson: '{"display_text":"Quero"}' }] } } },
  expected: draft({ content: 'Oferta\n20% de desconto hoje\nVálido até 23h59' }) });

// --- stubs and signalling (content_type null) --------------------------------------------------
const CIPHERTEXT = proto.WebMessageInfo.StubType.CIPHERTEXT;
add({ name: 'undecryptable_bad_mac', title: 'Could not be decrypted (Bad MAC): a private note', key: dm({ id: '3EB0B9B2C3D4E5F60001' }),
  stub: CIPHERTEXT, stubParams: ['Bad MAC'],
  expected: draft({ content: '⚠️ Chegou uma mensagem do WhatsApp que não pôde ser descriptografada (Bad MAC). Ela pode chegar de novo em instantes; se não chegar, veja no celular.', priv: true }) });
add({ name: 'undecryptable_group', title: 'Could not be decrypted in a group (No session record): the note says who', key: inGroup({ id: '3EB0B9B2C3D4E5F60002' }), pushName: 'João',
  stub: CIPHERTEXT, stubParams: ['No session record'],
  expected: draft({ content: '**João** (+5511977776666):\n⚠️ Chegou uma mensagem do WhatsApp que não pôde ser descriptografada (No session record). Ela pode chegar de novo em instantes; se não chegar, veja no celular.', priv: true }) });
add({ name: 'group_notice', title: 'Other stubs (someone added to a group) are skipped', key: inGroup({ id: '3EB0B9B2C3D4E5F60003' }), pushName: undefined,
  stub: proto.WebMessageInfo.StubType.GROUP_PARTICIPANT_ADD, stubParams: [JSON.stringify({ id: MEMBER_LID, phoneNumber: MEMBER })],
  expected: IGNORED });
add({ name: 'sender_key_only', title: 'A message with only a sender key distribution is skipped', key: inGroup({ id: '3EB0B9B2C3D4E5F60004' }), pushName: 'João',
  content: { senderKeyDistributionMessage: { groupId: GROUP, axolotlSenderKeyDistributionMessage: bytes('skdm', 40) } },
  expected: IGNORED });
add({ name: 'message_context_info_only', title: 'A message with only messageContextInfo is skipped', key: dm({ id: '3EB0B9B2C3D4E5F60005' }),
  content: { messageContextInfo: { messageSecret: bytes('mci-only') } },
  expected: IGNORED });
add({ name: 'unknown_content', title: 'Content Baileys has no type for (a `call` field): a placeholder naming it', key: dm({ id: '3EB0B9B2C3D4E5F60006' }),
  content: { call: { callKey: bytes('call', 32) } },
  expected: draft({ content: '[Mensagem do tipo call recebida no WhatsApp; este tipo ainda não é exibido aqui. Veja no celular.]', attrs: { ponte_kind: 'call' } }) });

// --- unknown kinds -------------------------------------------------------------------------------
add({ name: 'event', title: 'A kind without converter (an event invitation): a visible placeholder naming the kind', key: dm({ id: '3EB0B8B2C3D4E5F60001' }),
  content: { messageContextInfo: { messageSecret: bytes('event') }, eventMessage: { name: 'Inauguração', description: 'Venha!', startTime: TS + 86400, isCanceled: false } },
  expected: draft({ content: '[Mensagem do tipo eventMessage recebida no WhatsApp; este tipo ainda não é exibido aqui. Veja no celular.]',
    attrs: { ponte_kind: 'eventMessage' } }) });
add({ name: 'group_invite', title: 'A group invitation: a placeholder, in English', language: 'en', key: dm({ id: '3EB0B8B2C3D4E5F60002' }),
  content: { groupInviteMessage: { groupJid: GROUP, inviteCode: 'AbCdEf123', groupName: 'Clientes VIP', inviteExpiration: TS + 3 * 86400 } },
  expected: draft({ content: '[A groupInviteMessage message arrived on WhatsApp; this kind is not shown here yet. See it on the phone.]',
    attrs: { ponte_kind: 'groupInviteMessage' } }) });

// ---------------------------------------------------------------------------------------------

function frameOf(c) {
  const msg = waMessage({ key: c.key, content: c.content, ts: c.ts, pushName: 'pushName' in c ? c.pushName : 'Maria', stub: c.stub, stubParams: c.stubParams });
  const { frames, skipped } = messageFrames({ messages: [msg], type: c.upsert ?? 'notify' }, new RecentIds());
  if (skipped || frames.length !== 1) throw new Error(`${c.name}: messageFrames skipped the message`);
  const frame = /** @type {Record<string, unknown>} */ (frames[0]);
  if (c.media) frame.media = c.media;
  if (c.chat_name) frame.chat_name = c.chat_name;
  return frame;
}

// Start clean, removing only what this script writes: <kind>/<case>.json.
mkdirSync(OUT, { recursive: true });
for (const dir of readdirSync(OUT, { withFileTypes: true }).filter((d) => d.isDirectory())) {
  const folder = join(OUT, dir.name);
  for (const name of readdirSync(folder).filter((n) => n.endsWith('.json'))) rmSync(join(folder, name));
  if (readdirSync(folder).length === 0) rmdirSync(folder);
}
const seen = new Set();
for (const c of cases) {
  const event = frameOf(c);
  const dir = event.content_type ?? 'null';
  const path = join(OUT, String(dir), `${c.name}.json`);
  if (seen.has(path)) throw new Error(`duplicate case ${path}`);
  seen.add(path);
  mkdirSync(join(OUT, String(dir)), { recursive: true });
  const golden = { name: c.title, ...(c.language ? { language: c.language } : {}), event, expected: c.expected };
  writeFileSync(path, `${JSON.stringify(golden, null, 2)}\n`);
}
const dirs = readdirSync(OUT).sort();
console.error(`wrote ${cases.length} cases in ${dirs.length} folders: ${dirs.join(' ')}`);
