"""Every sentence Ponte posts into Chatwoot, and only here.

Brazilian Portuguese by default, as the original bridge wrote; English with
`CHATWOOT_LANGUAGE=en`. Placeholders are `str.format` fields; a test checks both languages have
the same fields for every sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

Language = Literal["pt_BR", "en"]


@dataclass(frozen=True, slots=True)
class Texts:
    qr_note: str
    qr_limit: str
    pairing_code: str
    linking_started: str
    linked: str
    already_linked: str
    unauthorized: str
    command_usage: str
    instance_stopped: str
    logged_out: str
    send_failed: str
    delivery_failed: str
    deliveries_failed: str  # several failures of one chat in one note (at most one a minute)
    unsupported_message: str
    reason_not_connected: str
    reason_invalid_recipient: str
    reason_timeout: str
    reason_rejected: str
    reason_not_on_whatsapp: str
    reason_bad_media: str
    reason_attachment_foreign: str
    reason_attachment_too_large: str
    reason_attachment_unavailable: str
    reason_internal: str  # Ponte itself failed on the message (a bug: see its log)
    revoke_failed: str
    confirm_relink: str
    nothing_to_confirm: str
    status_line: str
    status_none: str
    list_header: str
    list_empty: str
    help: str
    stopped: str
    started: str
    restarted: str
    logged_out_by_request: str
    not_found: str
    crash_loop: str
    inbox_created: str
    inbox_failed: str
    agent_invited: str
    agent_failed: str
    public_url_missing: str
    unreadable_message: str
    # Names of message kinds, shown in placeholders and quote excerpts.
    kind_image: str
    kind_video: str
    kind_gif: str
    kind_video_note: str
    kind_audio: str
    kind_voice_note: str
    kind_document: str
    kind_sticker: str
    kind_animated_sticker: str
    kind_location: str
    kind_live_location: str
    kind_contact: str
    kind_poll: str
    kind_other: str
    media_missing: str
    media_too_large: str
    media_download_failed: str
    size_unknown: str
    decimal_separator: str  # in file sizes: "2,5 MB"
    location_named: str
    contact: str
    contacts: str
    contact_unnamed: str
    contact_no_phone: str
    reaction_removed: str
    edited: str
    deleted: str
    deleted_own: str
    undecryptable: str
    poll: str
    poll_any: str
    poll_up_to: str
    you: str
    forwarded: str
    forwarded_many: str
    sent_at: str
    time_format: str  # strftime pattern for `sent_at`, always in UTC
    redis_unreachable: str
    redis_back: str


PT_BR = Texts(
    qr_note="Tentativa {attempt}/{max_attempts}: escaneie este QR Code no WhatsApp "
    "(Aparelhos conectados > Conectar um aparelho) para ligar o número à caixa {inbox}.",
    qr_limit="Limite de {max_attempts} tentativas de QR Code atingido para a caixa {inbox}. "
    "Nenhum QR será enviado automaticamente. Envie `{keyword}` novamente para tentar de novo.",
    pairing_code="Código de conexão para a caixa {inbox}: *{code}*. No celular do número {phone}: "
    "WhatsApp > Aparelhos conectados > Conectar um aparelho > Conectar com número de telefone, "
    "e digite o código.",
    linking_started="Iniciando a conexão do WhatsApp para a caixa {inbox}. O QR Code chega "
    "em instantes.",
    linked="✅ WhatsApp conectado: o número {number} está ligado à caixa {inbox}.",
    already_linked="O número {number} já está conectado à caixa {inbox}. Nada foi alterado.",
    unauthorized="❌ Acesso negado: você não tem permissão para usar o comando `{keyword}`.",
    command_usage="Uso: `{keyword} [id_da_caixa] [id_da_conta]` (sem argumentos, usa a caixa e "
    "a conta desta conversa), ou `{keyword} pair <telefone>` para conectar por código.",
    instance_stopped="A conexão do WhatsApp da caixa {inbox} foi interrompida: {reason}. "
    "Envie `{keyword}` para conectar de novo.",
    logged_out="O WhatsApp {number} foi desconectado pelo celular e a sessão foi apagada. "
    "Envie `{keyword}` para ligar um número de novo.",
    send_failed="⚠️ Mensagem não entregue no WhatsApp: {reason}",
    delivery_failed="⚠️ Uma mensagem do WhatsApp (id {wa_message_id}) não pôde ser registrada "
    "aqui: {reason}",
    deliveries_failed="⚠️ {count} mensagens do WhatsApp não puderam ser registradas aqui (a "
    "última, id {wa_message_id}: {reason}). Veja `ponte jobs failed`.",
    unsupported_message="[Mensagem do tipo {kind} recebida no WhatsApp; este tipo ainda não é "
    "exibido aqui. Veja no celular.]",
    reason_not_connected="o número não está conectado ao WhatsApp no momento",
    reason_invalid_recipient="o destinatário não é um número de WhatsApp válido",
    reason_timeout="o WhatsApp não respondeu a tempo",
    reason_rejected="o WhatsApp recusou a mensagem",
    reason_not_on_whatsapp="este número não tem WhatsApp",
    reason_bad_media="o arquivo não pôde ser lido para envio",
    reason_attachment_foreign="o anexo não está no servidor do Chatwoot configurado",
    reason_attachment_too_large="o anexo é grande demais para enviar",
    reason_attachment_unavailable="o anexo não pôde ser baixado do Chatwoot",
    reason_internal="erro interno do Ponte ao enviar (detalhes no log do Ponte)",
    revoke_failed="⚠️ A mensagem não foi apagada no WhatsApp: {reason}",
    confirm_relink="O número {number} está conectado à caixa {inbox}. Para desconectá-lo e ligar "
    "outro número, envie `{keyword} confirmar` nos próximos 5 minutos.",
    nothing_to_confirm="Não há nada a confirmar para a caixa {inbox}.",
    status_line="{inbox}: {state}{number}{uptime}; fila: {queue}; último erro: {error}",
    status_none="A caixa {inbox} não tem WhatsApp ligado. Envie `{keyword}` para ligar um número.",
    list_header="Números de WhatsApp desta conta:",
    list_empty="Nenhum número de WhatsApp ligado nesta conta.",
    help="Comandos (`{keyword} ...`):\n"
    "• `{keyword}` liga um número a esta caixa (QR Code)\n"
    "• `{keyword} pair <telefone>` liga por código de pareamento\n"
    "• `{keyword} status` estado desta caixa\n"
    "• `{keyword} list` todos os números da conta\n"
    "• `{keyword} stop` / `{keyword} start` pausa / retoma (a sessão é mantida)\n"
    "• `{keyword} restart` reinicia a conexão\n"
    "• `{keyword} logout` desliga o número e apaga a sessão\n"
    "• `{keyword} caixa <nome>` cria uma caixa de API ligada ao Ponte\n"
    "• `{keyword} agente <email> <nome>` convida um agente\n"
    "Os comandos `status`, `stop`, `start`, `restart` e `logout` aceitam o id de outra caixa.",
    stopped="A conexão do WhatsApp da caixa {inbox} foi pausada. A sessão foi mantida; envie "
    "`{keyword} start` para retomar.",
    started="Retomando a conexão do WhatsApp da caixa {inbox}.",
    restarted="Reiniciando a conexão do WhatsApp da caixa {inbox}.",
    logged_out_by_request="O WhatsApp {number} foi desligado da caixa {inbox} e a sessão foi "
    "apagada.",
    not_found="A caixa {inbox} não tem WhatsApp ligado.",
    crash_loop="A conexão do WhatsApp da caixa {inbox} caiu {count} vezes em {minutes} minutos e "
    "foi parada (erro: {reason}). Verifique os logs e envie `{keyword} start` para tentar de "
    "novo.",
    inbox_created="Caixa {inbox} criada (id {inbox_id}) com o webhook do Ponte. Iniciando a "
    "ligação de um número a ela.",
    inbox_failed="A caixa não pôde ser criada: {reason}",
    agent_invited="Convite enviado para {email} ({name}).",
    agent_failed="O convite para {email} não pôde ser enviado: {reason}",
    public_url_missing="Para criar caixas, configure SERVER_PUBLIC_URL com o endereço em que o "
    "Chatwoot alcança o Ponte.",
    unreadable_message="[Mensagem do tipo {kind} recebida no WhatsApp, mas não foi possível "
    "lê-la aqui. Veja no celular.]",
    kind_image="📷 Foto",
    kind_video="🎥 Vídeo",
    kind_gif="🎞️ GIF animado",
    kind_video_note="🎥 Mensagem de vídeo",
    kind_audio="🎵 Áudio",
    kind_voice_note="🎤 Mensagem de voz",
    kind_document="📄 Documento",
    kind_sticker="✨ Figurinha",
    kind_animated_sticker="✨ Figurinha animada",
    kind_location="📍 Localização",
    kind_live_location="📍 Localização em tempo real",
    kind_contact="👤 Contato",
    kind_poll="📊 Enquete",
    kind_other="💬 Mensagem ({kind})",
    media_missing="[{kind}: o arquivo não chegou até aqui. Veja no celular.]",
    media_too_large="[{kind} não baixado: {file_name} ({size}) passa do limite de tamanho. "
    "Veja no celular.]",
    media_download_failed="[{kind}: não foi possível baixar {file_name} ({size}) do WhatsApp. "
    "Veja no celular.]",
    size_unknown="tamanho desconhecido",
    decimal_separator=",",
    location_named="📍 Localização: {name}",
    contact="👤 Contato: {name}",
    contacts="👥 {count} contatos",
    contact_unnamed="sem nome",
    contact_no_phone="(sem número)",
    reaction_removed="(reação removida)",
    edited="✏️ Mensagem editada:\n{text}",
    deleted="🗑️ O cliente apagou esta mensagem para todos no WhatsApp. O conteúdo original "
    "continua registrado aqui.",
    deleted_own="🗑️ Esta mensagem foi apagada para todos no WhatsApp pelo celular conectado. O "
    "conteúdo original continua registrado aqui.",
    undecryptable="⚠️ Chegou uma mensagem do WhatsApp que não pôde ser descriptografada "
    "({reason}). Ela pode chegar de novo em instantes; se não chegar, veja no celular.",
    poll="📊 Enquete: {question}",
    poll_any="(várias respostas permitidas)",
    poll_up_to="(até {count} respostas)",
    you="Você",
    forwarded="↪️ Encaminhada",
    forwarded_many="↪️ Encaminhada com frequência",
    sent_at="🕓 Enviada no WhatsApp em {time}",
    time_format="%d/%m/%Y %H:%M UTC",
    redis_unreachable="⚠️ O Redis do Ponte não responde há {seconds} s. Nada se perde: as "
    "mensagens que chegam ficam guardadas no diário local do Ponte e entram no Chatwoot, na "
    "ordem, assim que o Redis voltar. Até lá, as mensagens do WhatsApp atrasam.",
    redis_back="✅ O Redis voltou depois de {seconds} s; as {count} operações guardadas no "
    "diário local foram entregues.",
)

EN = Texts(
    qr_note="Attempt {attempt}/{max_attempts}: scan this QR code in WhatsApp "
    "(Linked devices > Link a device) to link the number to inbox {inbox}.",
    qr_limit="QR code limit of {max_attempts} attempts reached for inbox {inbox}. No more QR "
    "codes will be sent. Send `{keyword}` again to retry.",
    pairing_code="Pairing code for inbox {inbox}: *{code}*. On the phone of {phone}: WhatsApp > "
    "Linked devices > Link a device > Link with phone number instead, and type the code.",
    linking_started="Starting the WhatsApp connection for inbox {inbox}. The QR code follows "
    "in a moment.",
    linked="✅ WhatsApp connected: number {number} is linked to inbox {inbox}.",
    already_linked="Number {number} is already connected to inbox {inbox}. Nothing was changed.",
    unauthorized="❌ Access denied: you are not allowed to use the `{keyword}` command.",
    command_usage="Usage: `{keyword} [inbox_id] [account_id]` (without arguments, the inbox and "
    "account of this conversation), or `{keyword} pair <phone>` to link by code.",
    instance_stopped="The WhatsApp connection of inbox {inbox} stopped: {reason}. Send "
    "`{keyword}` to connect again.",
    logged_out="WhatsApp {number} was unlinked from the phone and its session was wiped. Send "
    "`{keyword}` to link a number again.",
    send_failed="⚠️ Message not delivered on WhatsApp: {reason}",
    delivery_failed="⚠️ A WhatsApp message (id {wa_message_id}) could not be recorded here: "
    "{reason}",
    deliveries_failed="⚠️ {count} WhatsApp messages could not be recorded here (the last, id "
    "{wa_message_id}: {reason}). See `ponte jobs failed`.",
    unsupported_message="[A {kind} message arrived on WhatsApp; this kind is not shown here yet. "
    "See it on the phone.]",
    reason_not_connected="the number is not connected to WhatsApp right now",
    reason_invalid_recipient="the recipient is not a valid WhatsApp number",
    reason_timeout="WhatsApp did not answer in time",
    reason_rejected="WhatsApp refused the message",
    reason_not_on_whatsapp="this number has no WhatsApp account",
    reason_bad_media="the file could not be read for sending",
    reason_attachment_foreign="the attachment is not on the configured Chatwoot server",
    reason_attachment_too_large="the attachment is too large to send",
    reason_attachment_unavailable="the attachment could not be downloaded from Chatwoot",
    reason_internal="an internal error in Ponte while sending (details in Ponte's log)",
    revoke_failed="⚠️ The message was not deleted on WhatsApp: {reason}",
    confirm_relink="Number {number} is connected to inbox {inbox}. To unlink it and link another "
    "number, send `{keyword} confirmar` within 5 minutes.",
    nothing_to_confirm="There is nothing to confirm for inbox {inbox}.",
    status_line="{inbox}: {state}{number}{uptime}; queue: {queue}; last error: {error}",
    status_none="Inbox {inbox} has no WhatsApp number. Send `{keyword}` to link one.",
    list_header="WhatsApp numbers of this account:",
    list_empty="No WhatsApp number is linked in this account.",
    help="Commands (`{keyword} ...`):\n"
    "• `{keyword}` links a number to this inbox (QR code)\n"
    "• `{keyword} pair <phone>` links by pairing code\n"
    "• `{keyword} status` state of this inbox\n"
    "• `{keyword} list` every number of the account\n"
    "• `{keyword} stop` / `{keyword} start` pause / resume (the session is kept)\n"
    "• `{keyword} restart` restarts the connection\n"
    "• `{keyword} logout` unlinks the number and wipes the session\n"
    "• `{keyword} caixa <name>` creates an API inbox wired to Ponte\n"
    "• `{keyword} agente <email> <name>` invites an agent\n"
    "`status`, `stop`, `start`, `restart` and `logout` accept another inbox's id.",
    stopped="The WhatsApp connection of inbox {inbox} is paused. The session is kept; send "
    "`{keyword} start` to resume.",
    started="Resuming the WhatsApp connection of inbox {inbox}.",
    restarted="Restarting the WhatsApp connection of inbox {inbox}.",
    logged_out_by_request="WhatsApp {number} was unlinked from inbox {inbox} and its session was "
    "wiped.",
    not_found="Inbox {inbox} has no WhatsApp number.",
    crash_loop="The WhatsApp connection of inbox {inbox} failed {count} times in {minutes} "
    "minutes and was stopped (error: {reason}). Check the logs and send `{keyword} start` to "
    "try again.",
    inbox_created="Inbox {inbox} created (id {inbox_id}) with Ponte's webhook. Starting to link a "
    "number to it.",
    inbox_failed="The inbox could not be created: {reason}",
    agent_invited="Invitation sent to {email} ({name}).",
    agent_failed="The invitation to {email} could not be sent: {reason}",
    public_url_missing="To create inboxes, set SERVER_PUBLIC_URL to the address at which Chatwoot "
    "reaches Ponte.",
    unreadable_message="[A {kind} message arrived on WhatsApp but could not be read here. "
    "See it on the phone.]",
    kind_image="📷 Photo",
    kind_video="🎥 Video",
    kind_gif="🎞️ Animated GIF",
    kind_video_note="🎥 Video message",
    kind_audio="🎵 Audio",
    kind_voice_note="🎤 Voice message",
    kind_document="📄 Document",
    kind_sticker="✨ Sticker",
    kind_animated_sticker="✨ Animated sticker",
    kind_location="📍 Location",
    kind_live_location="📍 Live location",
    kind_contact="👤 Contact",
    kind_poll="📊 Poll",
    kind_other="💬 Message ({kind})",
    media_missing="[{kind}: the file did not reach Chatwoot. See it on the phone.]",
    media_too_large="[{kind} not downloaded: {file_name} ({size}) is over the size limit. "
    "See it on the phone.]",
    media_download_failed="[{kind}: {file_name} ({size}) could not be downloaded from WhatsApp. "
    "See it on the phone.]",
    size_unknown="unknown size",
    decimal_separator=".",
    location_named="📍 Location: {name}",
    contact="👤 Contact: {name}",
    contacts="👥 {count} contacts",
    contact_unnamed="no name",
    contact_no_phone="(no number)",
    reaction_removed="(reaction removed)",
    edited="✏️ Edited message:\n{text}",
    deleted="🗑️ The customer deleted this message for everyone on WhatsApp. The original "
    "content stays here for reference.",
    deleted_own="🗑️ This message was deleted for everyone on WhatsApp from the linked phone. The "
    "original content stays here for reference.",
    undecryptable="⚠️ A WhatsApp message arrived that could not be decrypted ({reason}). It may "
    "arrive again shortly; if it does not, see it on the phone.",
    poll="📊 Poll: {question}",
    poll_any="(several answers allowed)",
    poll_up_to="(up to {count} answers)",
    you="You",
    forwarded="↪️ Forwarded",
    forwarded_many="↪️ Forwarded many times",
    sent_at="🕓 Sent on WhatsApp at {time}",
    time_format="%Y-%m-%d %H:%M UTC",
    redis_unreachable="⚠️ Ponte's Redis has not answered for {seconds} s. Nothing is lost: "
    "what arrives is kept in Ponte's local journal and reaches Chatwoot, in order, as soon as "
    "Redis is back. Until then WhatsApp messages are delayed.",
    redis_back="✅ Redis is back after {seconds} s; the {count} operations kept in the local "
    "journal were delivered.",
)

_BY_LANGUAGE: dict[str, Texts] = {"pt_BR": PT_BR, "en": EN}


def texts_for(language: Language) -> Texts:
    return _BY_LANGUAGE[language]


def sentence_names() -> list[str]:
    return [f.name for f in fields(Texts)]


_STATE_NAMES: dict[str, dict[str, str]] = {
    "pt_BR": {"open": "conectado", "qr_pending": "aguardando a leitura do QR Code",
              "connecting": "conectando", "disconnected": "desconectado",
              "reconnecting": "reconectando", "stopping": "parando", "stopped": "parado",
              "qr_limit_reached": "limite de QR Codes atingido", "fatal": "parado por erro"},
    "en": {"open": "connected", "qr_pending": "waiting for the QR code to be scanned",
           "connecting": "connecting", "disconnected": "disconnected",
           "reconnecting": "reconnecting", "stopping": "stopping", "stopped": "stopped",
           "qr_limit_reached": "QR code limit reached", "fatal": "stopped by an error"},
}


def state_name(language: Language, state: str) -> str:
    """An instance's state (as /global-status words it) in the notes' language."""
    return _STATE_NAMES[language].get(state, state)
