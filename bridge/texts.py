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
    unsupported_message: str
    reason_not_connected: str
    reason_invalid_recipient: str
    reason_timeout: str
    reason_rejected: str
    attachments_not_sent: str


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
    unsupported_message="[Mensagem do tipo {kind} recebida no WhatsApp; este tipo ainda não é "
    "exibido aqui. Veja no celular.]",
    reason_not_connected="o número não está conectado ao WhatsApp no momento",
    reason_invalid_recipient="o destinatário não é um número de WhatsApp válido",
    reason_timeout="o WhatsApp não respondeu a tempo",
    reason_rejected="o WhatsApp recusou a mensagem",
    attachments_not_sent="⚠️ Os anexos desta mensagem não foram enviados ao WhatsApp: o envio de "
    "anexos ainda não é suportado.",
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
    unsupported_message="[A {kind} message arrived on WhatsApp; this kind is not shown here yet. "
    "See it on the phone.]",
    reason_not_connected="the number is not connected to WhatsApp right now",
    reason_invalid_recipient="the recipient is not a valid WhatsApp number",
    reason_timeout="WhatsApp did not answer in time",
    reason_rejected="WhatsApp refused the message",
    attachments_not_sent="⚠️ The attachments of this message were not sent to WhatsApp: sending "
    "attachments is not supported yet.",
)

_BY_LANGUAGE: dict[str, Texts] = {"pt_BR": PT_BR, "en": EN}


def texts_for(language: Language) -> Texts:
    return _BY_LANGUAGE[language]


def sentence_names() -> list[str]:
    return [f.name for f in fields(Texts)]
