// The sign-in page's one script (CSP: script-src 'self', no inline code).
// MLflow's links carry the page in the URL fragment (#/experiments/1/runs/…), which never reaches
// a server: copy it into the form so the gateway can send the person back to exactly that page.
"use strict";
(function () {
  function keepFragment() {
    var field = document.getElementById("fragment");
    if (field && window.location.hash) {
      field.value = window.location.hash.replace(/^#/, "");
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    keepFragment();
    var form = document.getElementById("signin");
    if (form) {
      form.addEventListener("submit", keepFragment);
    }
    var key = document.getElementById("key");
    if (key) {
      key.focus();
    }
  });
})();
