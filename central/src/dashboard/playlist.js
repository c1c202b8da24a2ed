// The playlist editor's drag and drop: drop an item before another (or after the last)
// and the page posts the same form as the ↑/↓ buttons (op=move, item, before), so the
// server applies and audits it like any other edit. Without this script the buttons do.
(function () {
  "use strict";
  var list = document.getElementById("items");
  if (!list) { return; }
  var action = list.getAttribute("data-action");
  var csrf = list.getAttribute("data-csrf");
  var dragged = null;

  function post(item, before) {
    var form = document.createElement("form");
    form.method = "post";
    form.action = action;
    [["csrf_token", csrf], ["op", "move"], ["item", item], ["before", before]].forEach(function (pair) {
      var input = document.createElement("input");
      input.type = "hidden"; input.name = pair[0]; input.value = pair[1];
      form.appendChild(input);
    });
    document.body.appendChild(form);
    form.submit();
  }

  list.addEventListener("dragstart", function (e) {
    var li = e.target.closest("li[data-item]");
    if (!li) { return; }
    dragged = li;
    li.classList.add("dragging");
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", li.getAttribute("data-item"));
  });
  list.addEventListener("dragend", function () {
    if (dragged) { dragged.classList.remove("dragging"); }
    Array.prototype.forEach.call(list.querySelectorAll(".drop-before"), function (el) {
      el.classList.remove("drop-before");
    });
  });
  list.addEventListener("dragover", function (e) {
    if (!dragged) { return; }
    e.preventDefault();
    var li = e.target.closest("li[data-item]");
    Array.prototype.forEach.call(list.querySelectorAll(".drop-before"), function (el) {
      el.classList.remove("drop-before");
    });
    if (li && li !== dragged) { li.classList.add("drop-before"); }
  });
  list.addEventListener("drop", function (e) {
    if (!dragged) { return; }
    e.preventDefault();
    var li = e.target.closest("li[data-item]");
    var item = dragged.getAttribute("data-item");
    if (li === dragged) { return; }
    // Dropped on an item: before it. Dropped below the last: the end.
    post(item, li ? li.getAttribute("data-item") : "");
  });
}());
