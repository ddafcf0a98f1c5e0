// The register and reset pages. The token stays in the URL fragment, so it
// never reaches a server log or a Referer header; opening the page only asks
// whether the link is usable, only submitting the form uses it up.
"use strict";

const TEXT = {
  en: {
    register: "Choose your password",
    reset: "Choose a new password",
    who: (u, o) => `For ${u} at ${o}.`,
    password: "New password",
    confirm: "Repeat it",
    rules: "The password needs:",
    save: "Save password",
    mismatch: "The two passwords differ.",
    expired_register: "This link expired. Ask for a new one with “Forgot password” (company and username), or ask your administrator.",
    expired_reset: "This link expired. Ask for a new password reset.",
    invalid: "This link is not valid: it was already used, a newer one was sent, or it was copied incompletely.",
    unmet: "The password does not meet every rule yet: see the rules in red.",
    done: (u, o) => `Your password is saved. Sign in to ${o} as ${u}.`,
    busy: "Too many attempts right now. Try again in a moment.",
    failed: "Something went wrong. Try again.",
  },
  "pt-BR": {
    register: "Escolha sua senha",
    reset: "Escolha uma nova senha",
    who: (u, o) => `Para ${u} na ${o}.`,
    password: "Nova senha",
    confirm: "Repita a senha",
    rules: "A senha precisa de:",
    save: "Salvar senha",
    mismatch: "As duas senhas são diferentes.",
    expired_register: "Este link expirou. Peça um novo em “Esqueci minha senha” (empresa e usuário), ou ao seu administrador.",
    expired_reset: "Este link expirou. Peça uma nova redefinição de senha.",
    invalid: "Este link não é válido: já foi usado, um mais novo foi enviado, ou foi copiado pela metade.",
    unmet: "A senha ainda não atende a todas as regras: veja as regras em vermelho.",
    done: (u, o) => `Sua senha foi salva. Entre na ${o} como ${u}.`,
    busy: "Muitas tentativas agora. Tente de novo em instantes.",
    failed: "Algo deu errado. Tente de novo.",
  },
};

const RULES = {
  en: {
    PASSWORD_UPPERCASE: "at least 2 uppercase letters",
    PASSWORD_LOWERCASE: "at least 4 lowercase letters",
    PASSWORD_SPECIAL: "at least 1 special character",
    PASSWORD_DIGITS: "at least 2 digits",
    PASSWORD_CONTAINS_USERNAME: "not containing your username",
    PASSWORD_TOO_LONG: "at most 256 characters",
  },
  "pt-BR": {
    PASSWORD_UPPERCASE: "pelo menos 2 letras maiúsculas",
    PASSWORD_LOWERCASE: "pelo menos 4 letras minúsculas",
    PASSWORD_SPECIAL: "pelo menos 1 caractere especial",
    PASSWORD_DIGITS: "pelo menos 2 dígitos",
    PASSWORD_CONTAINS_USERNAME: "não conter seu usuário",
    PASSWORD_TOO_LONG: "no máximo 256 caracteres",
  },
};

const purpose = location.pathname.replace(/\/+$/, "").endsWith("/reset") ? "reset" : "register";
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
let locale = "en";
const $ = (id) => document.getElementById(id);

function notice(message, isError) {
  const box = $("notice");
  box.textContent = message;
  box.className = isError ? "error" : "";
  box.hidden = !message;
}

function showRules(unmet) {
  const list = $("rules");
  list.replaceChildren();
  for (const [code, text] of Object.entries(RULES[locale])) {
    const item = document.createElement("li");
    item.textContent = text;
    item.dataset.code = code;
    if (unmet) item.className = unmet.includes(code) ? "unmet" : "met";
    list.append(item);
  }
}

function translate() {
  const t = TEXT[locale];
  document.documentElement.lang = locale;
  $("title").textContent = t[purpose];
  $("password-label").textContent = t.password;
  $("confirm-label").textContent = t.confirm;
  $("rules-title").textContent = t.rules;
  $("submit").textContent = t.save;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    referrerPolicy: "no-referrer",
  });
  let json = {};
  try { json = await response.json(); } catch (_) { /* an empty answer */ }
  return { status: response.status, json };
}

function linkProblem(state) {
  const t = TEXT[locale];
  notice(state === "expired" ? t[`expired_${purpose}`] : t.invalid, true);
  $("form").hidden = true;
}

async function open() {
  const { json } = await post("/api/link", { token, purpose });
  if (TEXT[json.locale]) locale = json.locale;
  translate();
  showRules(null);
  if (json.state !== "valid") return linkProblem(json.state);
  $("who").textContent = TEXT[locale].who(json.username, json.organization);
  $("who").hidden = false;
  $("form").hidden = false;
}

async function submit(event) {
  event.preventDefault();
  const t = TEXT[locale];
  const password = $("password").value;
  if (password !== $("confirm").value) return notice(t.mismatch, true);
  $("submit").disabled = true;
  try {
    const { status, json } = await post(`/api/${purpose}`, { token, password });
    if (status === 200) {
      $("form").hidden = true;
      notice("", false);
      $("done").textContent = t.done(json.username, json.organization);
      $("done").hidden = false;
    } else if (json.error === "PASSWORD_POLICY") {
      showRules(json.unmet || []);
      notice(t.unmet, true);
    } else if (json.error === "TOKEN_EXPIRED") {
      linkProblem("expired");
    } else if (json.error === "INVALID_TOKEN") {
      linkProblem("invalid");
    } else if (status === 429) {
      notice(t.busy, true);
    } else {
      notice(t.failed, true);
    }
  } finally {
    $("submit").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("form").addEventListener("submit", submit);
  open().catch(() => notice(TEXT[locale].failed, true));
});
