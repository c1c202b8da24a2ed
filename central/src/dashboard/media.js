// The media library's uploads and deletions, through central's API with the session's
// CSRF token (no build step; plain browser JavaScript).
(function () {
  "use strict";
  var root = document.getElementById("media-library");
  if (!root) { return; }
  var csrf = root.getAttribute("data-csrf");
  var venue = root.getAttribute("data-venue");
  var status = document.getElementById("media-status");
  var list = document.getElementById("upload-list");

  function say(text, bad) {
    status.textContent = text;
    status.className = bad ? "notice error" : "notice";
  }

  function upload(file) {
    return new Promise(function (resolve) {
      var row = document.createElement("li");
      var label = document.createElement("span");
      label.textContent = file.name + " ";
      var bar = document.createElement("progress");
      bar.max = 100; bar.value = 0;
      bar.setAttribute("aria-label", "Upload of " + file.name);
      row.appendChild(label); row.appendChild(bar);
      list.appendChild(row);
      var xhr = new XMLHttpRequest();
      var url = "/api/v1/media?name=" + encodeURIComponent(file.name) +
        (venue ? "&venue=" + encodeURIComponent(venue) : "");
      xhr.open("PUT", url);
      xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) { bar.value = Math.round(100 * e.loaded / e.total); }
      };
      xhr.onload = function () {
        if (xhr.status === 201) {
          bar.value = 100; label.textContent = file.name + " — uploaded ";
          resolve(true);
        } else {
          var why = "failed";
          try { why = JSON.parse(xhr.responseText).error; } catch (e) { /* keep "failed" */ }
          label.textContent = file.name + " — " + why + " ";
          row.className = "error";
          resolve(false);
        }
      };
      xhr.onerror = function () { label.textContent = file.name + " — the connection failed "; resolve(false); };
      xhr.send(file);
    });
  }

  function uploadAll(files) {
    var all = Array.prototype.slice.call(files);
    if (all.length === 0) { return; }
    say("Uploading " + all.length + " file(s)…", false);
    Promise.all(all.map(upload)).then(function (done) {
      var ok = done.filter(Boolean).length;
      say(ok + " of " + done.length + " uploaded." + (ok > 0 ? " Reloading…" : ""), ok < done.length);
      if (ok > 0) { setTimeout(function () { location.reload(); }, 800); }
    });
  }

  var input = document.getElementById("media-files");
  input.addEventListener("change", function () { uploadAll(input.files); });
  var drop = document.getElementById("media-drop");
  ["dragenter", "dragover"].forEach(function (type) {
    drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    drop.addEventListener(type, function () { drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (e) { e.preventDefault(); uploadAll(e.dataTransfer.files); });

  root.addEventListener("click", function (e) {
    var button = e.target.closest("button[data-delete]");
    if (!button) { return; }
    var hash = button.getAttribute("data-delete");
    var force = button.getAttribute("data-force") === "true";
    var name = button.getAttribute("data-name");
    if (!confirm((force ? "Remove " + name + " from every playlist and delete it?" : "Delete " + name + "?"))) { return; }
    var url = "/api/v1/media/" + hash + "?" + (venue ? "venue=" + encodeURIComponent(venue) + "&" : "") + (force ? "force=true" : "");
    fetch(url, { method: "DELETE", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (body) { return [r.status, body]; }); })
      .then(function (answer) {
        if (answer[0] === 200) { location.reload(); return; }
        say(answer[1].error || "The media was not deleted.", true);
        if (answer[0] === 409) {
          button.setAttribute("data-force", "true");
          button.textContent = "Remove from playlists and delete";
        }
      })
      .catch(function () { say("The connection failed; nothing was deleted.", true); });
  });
}());
