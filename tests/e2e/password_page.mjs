// Opens a register or reset link in headless Chromium, submits a weak
// password, reads the rules the page marks unmet, then submits a good one
// and reads the confirmation. Prints one JSON line for the Rust test.
// Usage: node password_page.mjs LINK WEAK_PASSWORD GOOD_PASSWORD [SCREENSHOT.png]
import { withPageAt } from "./page.mjs";

const [link, weak, good, screenshot] = process.argv.slice(2);
await withPageAt(link, async (page, requests) => {
  const who = await page.locator("#who").textContent();

  await page.fill("#password", weak);
  await page.fill("#confirm", weak);
  await page.click("#submit");
  await page.locator("li.unmet").first().waitFor({ timeout: 10000 });
  const unmet = await page.locator("li.unmet").evaluateAll((items) => items.map((i) => i.dataset.code));
  const notice = await page.locator("#notice").textContent();
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });

  await page.fill("#password", good);
  await page.fill("#confirm", good);
  await page.click("#submit");
  await page.locator("#done").waitFor({ state: "visible", timeout: 10000 });
  const done = await page.locator("#done").textContent();
  // The token never left the fragment: no request carried it.
  const leaked = requests.some((url) => url.includes("rst_inv_") || url.includes("rst_pwr_"));
  console.log(JSON.stringify({ who, unmet, notice, done, leaked }));
});
