// Under require_second_factor: opens a register or reset link in headless
// Chromium, saves a good password, reads the key shown beside the QR code,
// computes the authenticator's code from it (RFC 6238: HMAC-SHA-1, 6 digits,
// 30 s) and confirms it, then reads the recovery codes. Prints one JSON line
// for the Rust test. Usage: node second_factor_page.mjs LINK PASSWORD [SCREENSHOT.png]
import { createHmac } from "node:crypto";
import { withPageAt } from "./page.mjs";

function base32(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of text.replace(/=+$/, "").toUpperCase()) {
    bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

function totp(secret) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30)));
  const mac = createHmac("sha1", base32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, "0");
}

const [link, password, screenshot] = process.argv.slice(2);
await withPageAt(link, async (page, requests) => {
  await page.fill("#password", password);
  await page.fill("#confirm", password);
  await page.click("#submit");
  await page.locator("#second-factor").waitFor({ state: "visible", timeout: 10000 });
  const qr = await page.locator("#qr svg").count();
  const secret = (await page.locator("#sf-secret").textContent()).trim();
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });

  await page.fill("#code", "000000" === totp(secret) ? "111111" : "000000");
  await page.click("#sf-submit");
  await page.locator("#notice").waitFor({ state: "visible", timeout: 10000 });
  const wrong = await page.locator("#notice").textContent();

  await page.fill("#code", totp(secret));
  await page.click("#sf-submit");
  await page.locator("#recovery").waitFor({ state: "visible", timeout: 10000 });
  const done = await page.locator("#done").textContent();
  const recovery_codes = await page.locator("#recovery-codes li").allTextContents();
  const leaked = requests.some((url) => url.includes("rst_inv_") || url.includes("rst_pwr_") || url.includes("rst_lc_"));
  console.log(JSON.stringify({ qr, secret, wrong, done, recovery_codes, leaked }));
});
