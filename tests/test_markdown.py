"""Chatwoot markdown as WhatsApp formatting."""

from __future__ import annotations

import pytest

from bridge.convert.markdown import signed, to_whatsapp


@pytest.mark.parametrize(("markdown", "whatsapp"), [
    ("Olá, tudo bem?", "Olá, tudo bem?"),
    ("Seu pedido **4512** saiu", "Seu pedido *4512* saiu"),
    ("__negrito__ também", "*negrito* também"),
    ("isso é *importante*", "isso é _importante_"),
    ("***os dois***", "*_os dois_*"),
    ("preço ~~R$ 90~~ R$ 70", "preço ~R$ 90~ R$ 70"),
    ("use o código `CUPOM10`", "use o código `CUPOM10`"),
    ("```\n**não** mexa\n```", "```\n**não** mexa\n```"),
    ("`**literal**`", "`**literal**`"),
    ("- arroz\n- feijão\n* ovos\n+ leite", "- arroz\n- feijão\n- ovos\n- leite"),
    ("1. um\n2. dois", "1. um\n2. dois"),
    ("veja [o site](https://loja.example/p/1)", "veja o site (https://loja.example/p/1)"),
    ("[https://loja.example](https://loja.example)", "https://loja.example"),
    ("# Aviso", "*Aviso*"),
    ("2 * 3 * 4 = 24", "2 * 3 * 4 = 24"),
    ("snake_case_name fica", "snake_case_name fica"),
    (r"um \*asterisco\* escapado", "um *asterisco* escapado"),
    ("e-mail: ana_maria@example.com", "e-mail: ana_maria@example.com"),
])
def test_markdown_becomes_whatsapp_formatting(markdown: str, whatsapp: str) -> None:
    assert to_whatsapp(markdown) == whatsapp


def test_signature_puts_the_agent_name_first() -> None:
    assert signed("Posso ajudar?", "Ana Souza", "\n") == "*Ana Souza*\nPosso ajudar?"
    assert signed("Posso ajudar?", "Ana", ": ") == "*Ana*: Posso ajudar?"
    assert signed("Posso ajudar?", None, "\n") == "Posso ajudar?"
