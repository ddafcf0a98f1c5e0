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
    sf_intro: "Your organization requires a second factor. Scan this code with an authenticator app (or type the key under it), then type the code the app shows.",
    code: "Code",
    sf_save: "Turn it on",
    wrong_code: "That is not the code the app shows now. Check the phone's clock and try again.",
    sf_expired: "This took too long. Sign in with your password to get a new link.",
    sf_done: (u, o) => `Your password and second factor are set. Sign in to ${o} as ${u}.`,
    recovery: "Your recovery codes, shown only now: keep them safe. Each signs in once without the app.",
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
    sf_intro: "Sua organização exige um segundo fator. Leia este código com um app autenticador (ou digite a chave abaixo dele) e digite o código que o app mostra.",
    code: "Código",
    sf_save: "Ativar",
    wrong_code: "Este não é o código que o app mostra agora. Confira o relógio do celular e tente de novo.",
    sf_expired: "Isto demorou demais. Entre com sua senha para receber um novo link.",
    sf_done: (u, o) => `Sua senha e seu segundo fator estão configurados. Entre na ${o} como ${u}.`,
    recovery: "Seus códigos de recuperação, mostrados só agora: guarde-os bem. Cada um entra uma vez sem o app.",
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
    if (status === 200 && json.second_factor) {
      $("form").hidden = true;
      notice("", false);
      showSecondFactor(json);
    } else if (status === 200) {
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

// Under require_second_factor: the QR code the server rendered (parsed as
// SVG, never as HTML), the key to type instead, and a code field.
let enrollment = null;

function showSecondFactor(json) {
  const t = TEXT[locale];
  enrollment = json;
  const svg = new DOMParser().parseFromString(json.second_factor.qr_svg, "image/svg+xml");
  $("qr").replaceChildren(document.importNode(svg.documentElement, true));
  $("sf-secret").textContent = json.second_factor.secret;
  $("sf-intro").textContent = t.sf_intro;
  $("code-label").textContent = t.code;
  $("sf-submit").textContent = t.sf_save;
  $("second-factor").hidden = false;
  $("code").focus();
}

async function submitCode(event) {
  event.preventDefault();
  const t = TEXT[locale];
  $("sf-submit").disabled = true;
  try {
    const { status, json } = await post("/api/second-factor", {
      challenge: enrollment.second_factor.challenge,
      code: $("code").value,
    });
    if (status === 200) {
      $("second-factor").hidden = true;
      notice("", false);
      $("done").textContent = t.sf_done(enrollment.username, enrollment.organization);
      $("done").hidden = false;
      $("recovery-title").textContent = t.recovery;
      $("recovery-codes").replaceChildren(...json.recovery_codes.map((code) => {
        const item = document.createElement("li");
        item.textContent = code;
        return item;
      }));
      $("recovery").hidden = false;
    } else if (json.error === "WRONG_CODE") {
      notice(t.wrong_code, true);
    } else if (json.error === "CHALLENGE_EXPIRED" || json.error === "INVALID_TOKEN") {
      notice(t.sf_expired, true);
      $("second-factor").hidden = true;
    } else {
      notice(t.failed, true);
    }
  } finally {
    $("sf-submit").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("form").addEventListener("submit", submit);
  $("second-factor").addEventListener("submit", submitCode);
  open().catch(() => notice(TEXT[locale].failed, true));
});
