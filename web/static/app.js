// Stagedoor's public pages. No build step: this file is served as written.
// On a channel page it polls the public status API every 2 s and starts or stops the
// player when the channel goes live or offline; on the index it refreshes the list.
"use strict";

const POLL_MS = 2000;

function localTime(el) {
  const d = new Date(el.dateTime);
  if (el.dateTime && !isNaN(d)) {
    el.textContent = d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  }
}

function channelPage(root) {
  const $ = (id) => document.getElementById(id);
  const badge = $("badge"), since = $("since"), video = $("player"), placeholder = $("placeholder");
  const src = root.dataset.hls;
  const offlineText = placeholder.textContent;
  let live = root.dataset.live === "true";
  let liveSince = since.querySelector("time").dateTime;
  let hls = null, retry = 0;

  function showPlaceholder(text) {
    video.hidden = true;
    placeholder.textContent = text;
    placeholder.hidden = false;
  }

  function stopPlayer() {
    clearTimeout(retry);
    if (hls) {
      hls.destroy();
      hls = null;
    }
    video.removeAttribute("src");
    video.load();
  }

  // A fatal error while the channel is still live (the playlist not ready yet, a
  // reconnecting encoder) is retried; going offline cancels the retry.
  function retryLater() {
    stopPlayer();
    retry = setTimeout(() => live && startPlayer(), POLL_MS);
  }

  function startPlayer() {
    stopPlayer();
    placeholder.hidden = true;
    video.hidden = false;
    if (window.Hls && Hls.isSupported()) {
      // MediaMTX's low-latency HLS is fMP4, which hls.js only passes through: its Web
      // Worker would add nothing, and without it the CSP needs no worker-src.
      hls = new Hls({ lowLatencyMode: true, enableWorker: false });
      hls.on(Hls.Events.ERROR, (_, data) => data.fatal && retryLater());
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src;
    } else {
      showPlaceholder("This browser cannot play HLS.");
      return;
    }
    // Muted autoplay is allowed everywhere; if it is refused, the controls remain.
    video.play().catch(() => {});
  }

  video.addEventListener("error", () => !hls && live && video.hasAttribute("src") && retryLater());

  function update(st) {
    const wasLive = live, oldSince = liveSince;
    live = st.live === true;
    liveSince = live ? st.live_since || "" : "";
    badge.textContent = live ? "Live" : "Offline";
    badge.className = "badge " + (live ? "live" : "offline");
    since.hidden = !live;
    const t = since.querySelector("time");
    t.dateTime = liveSince;
    localTime(t);
    // A new live_since while live is a new source (an encoder that reconnected).
    if (live && (!wasLive || Date.parse(liveSince) !== Date.parse(oldSince))) {
      startPlayer();
    } else if (!live && wasLive) {
      stopPlayer();
      showPlaceholder(offlineText);
    }
  }

  async function poll() {
    try {
      const res = await fetch(root.dataset.status, { cache: "no-store" });
      if (res.ok) update(await res.json());
    } catch {
      // Network hiccup: keep the current state and ask again.
    }
    setTimeout(poll, POLL_MS);
  }

  if (live) startPlayer();
  setTimeout(poll, POLL_MS);
}

function indexPage(list) {
  setInterval(async () => {
    try {
      const res = await fetch("/", { cache: "no-store" });
      if (!res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      const fresh = doc.getElementById("live-list");
      if (!fresh) return;
      fresh.querySelectorAll("time[datetime]").forEach(localTime);
      list.replaceWith(fresh);
      list = fresh;
    } catch {
      // Try again at the next tick.
    }
  }, 5 * POLL_MS);
}

document.querySelectorAll("time[datetime]").forEach(localTime);
const channelRoot = document.getElementById("channel");
const liveList = document.getElementById("live-list");
if (channelRoot) channelPage(channelRoot);
else if (liveList) indexPage(liveList);
