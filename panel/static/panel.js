// The panel works without this file; it only improves: copy buttons, and on a channel
// page the live badge, the numbers and the preview player kept current without a reload.
"use strict";

// Copy buttons: shown only when JavaScript runs; every field stays selectable without it.
document.querySelectorAll("button.copy").forEach(function (b) {
  var field = document.getElementById(b.dataset.copy);
  if (!field || !navigator.clipboard) return;
  b.hidden = false;
  b.addEventListener("click", function () {
    navigator.clipboard.writeText(field.value).then(function () { b.textContent = "Copied"; });
  });
});

// The live part of a channel page: polls /panel/channels/NAME/live every 3 s, and plays
// the stream (marked as the panel's preview, so it is not counted as a viewer) while the
// channel is live.
function liveSection(root) {
  var $ = function (id) { return document.getElementById(id); };
  var video = $("preview"), note = $("preview-note");
  var live = root.dataset.live === "true", since = "", player = null, retry = 0;

  function stop() {
    clearTimeout(retry);
    if (player) { player.destroy(); player = null; }
    video.removeAttribute("src");
    video.load();
    video.hidden = true;
  }

  function play() {
    stop();
    var src = root.dataset.preview;
    if (window.Hls && Hls.isSupported()) {
      player = new Hls({ lowLatencyMode: true, enableWorker: false });
      player.on(Hls.Events.ERROR, function (_, data) {
        // Not ready yet, or a reconnecting encoder: try again while live.
        if (data.fatal) { stop(); retry = setTimeout(function () { if (live) play(); }, 3000); }
      });
      player.loadSource(src);
      player.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src;
    } else {
      note.textContent = "This browser cannot play the preview.";
      return;
    }
    video.hidden = false;
    note.textContent = "Preview (muted; not counted as a viewer).";
    video.play().catch(function () {});
  }

  function show(st) {
    var badge = $("live-badge");
    badge.textContent = st.live ? "live" : "offline";
    badge.className = "badge " + (st.live ? "live" : "offline");
    $("live-viewers").textContent = st.measured ? String(st.viewers) : "–";
    $("live-bitrate").textContent = st.measured ? Math.round(st.bitrate / 1000) + " kbit/s" : "–";
    $("live-uptime").textContent = st.live ? st.uptime : "–";
    $("live-protocol").textContent = st.live ? st.protocol : "–";
    var was = live, wasSince = since;
    live = st.live === true;
    since = live ? st.since : "";
    if (live && (!was || (wasSince && since !== wasSince))) {
      play(); // went live, or a new source (an encoder that reconnected)
    } else if (!live && was) {
      stop();
      note.textContent = "Offline: the preview starts when the channel goes live.";
    }
  }

  function poll() {
    fetch(root.dataset.liveUrl, { cache: "no-store", credentials: "same-origin" })
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(function (st) { if (st) show(st); })
      .catch(function () {})
      .then(function () { setTimeout(poll, 3000); });
  }

  if (live) play();
  poll();
}

var liveRoot = document.getElementById("live");
if (liveRoot) liveSection(liveRoot);
