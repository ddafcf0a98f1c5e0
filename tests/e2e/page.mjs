// What the page scripts share: headless Chromium (Debian's, or $CHROMIUM)
// on a register or reset link, noting the URL of every request the page
// makes so that a script can check no token left the fragment.
import { chromium } from "playwright-core";

// Opens `link`, waits for its form, runs `use(page, requests)`; the browser
// is closed after, however `use` ends.
export async function withPageAt(link, use) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox"],
  });
  try {
    const page = await browser.newPage();
    const requests = [];
    page.on("request", (request) => requests.push(request.url()));
    await page.goto(link);
    await page.locator("#form").waitFor({ state: "visible", timeout: 10000 });
    return await use(page, requests);
  } finally {
    await browser.close();
  }
}
