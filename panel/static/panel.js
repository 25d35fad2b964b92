// Copy buttons: shown only when JavaScript runs; every field stays selectable without it.
document.querySelectorAll('button.copy').forEach(function (b) {
  var field = document.getElementById(b.dataset.copy);
  if (!field || !navigator.clipboard) return;
  b.hidden = false;
  b.addEventListener('click', function () {
    navigator.clipboard.writeText(field.value).then(function () { b.textContent = 'Copied'; });
  });
});
