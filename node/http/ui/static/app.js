// Art DAG node pages: every page reads without this script. It adds what needs a script:
// forms sent to the JSON API (errors shown with the API's own message), the run page's live
// progress over Server-Sent Events, the runs list's refresh, and the provenance check.
"use strict";

(function () {
  const STEP_EVENTS = { step_started: "running", step_cached: "cached", step_finished: "done", step_failed: "failed" };
  const FINAL_EVENTS = ["run_completed", "run_failed", "run_cancelled"];

  function short(id, keep) {
    keep = keep || 8;
    return id && id.length > keep + 6 ? id.slice(0, keep) + "…" + id.slice(-4) : id || "";
  }

  // --- talking to the API -----------------------------------------------------------------
  // XMLHttpRequest rather than fetch: it reports upload progress for large media.
  function send(method, url, body, onProgress) {
    return new Promise(function (resolve) {
      const request = new XMLHttpRequest();
      request.open(method, url);
      request.setRequestHeader("Accept", "application/json");
      if (body && !(body instanceof FormData)) request.setRequestHeader("Content-Type", "application/json");
      if (onProgress) {
        request.upload.addEventListener("progress", function (event) {
          if (event.lengthComputable) onProgress(Math.round((100 * event.loaded) / event.total));
        });
      }
      request.addEventListener("load", function () {
        let answer = null;
        try { answer = JSON.parse(request.responseText); } catch (ignored) { answer = null; }
        resolve({ ok: request.status >= 200 && request.status < 300, status: request.status, body: answer });
      });
      request.addEventListener("error", function () {
        resolve({ ok: false, status: 0, body: null });
      });
      request.send(body instanceof FormData ? body : body ? JSON.stringify(body) : null);
    });
  }

  function problem(result) {
    const error = result.body && result.body.error;
    if (error && error.message) return error.message;
    return result.status ? "The node answered " + result.status + "." : "The node could not be reached.";
  }

  class FormFailure extends Error {}

  async function uploadFile(file) {
    const data = new FormData();
    data.append("file", file, file.name);
    const result = await send("POST", "/cache/upload", data);
    if (!result.ok) throw new FormFailure("Uploading " + file.name + ": " + problem(result));
    return result.body.cid;
  }

  // A run form becomes {recipe?, inputs: {name: ref}, params?, output_name?}; chosen files
  // are uploaded first and named by their CID.
  async function runBody(form) {
    const body = { inputs: {} };
    const recipe = form.querySelector("input[name=recipe]");
    if (recipe) body.recipe = recipe.value;
    for (const field of form.querySelectorAll("[data-input]")) {
      const name = field.dataset.input;
      const file = field.querySelector("[data-input-file]").files[0];
      const picked = field.querySelector("[data-input-pick]").value;
      if (file) body.inputs[name] = await uploadFile(file);
      else if (picked) body.inputs[name] = picked;
      else throw new FormFailure("Choose media or a file for input " + name + ".");
    }
    const params = {};
    for (const input of form.querySelectorAll("[data-param]")) {
      const kind = input.dataset.type;
      if (kind === "boolean") params[input.dataset.param] = input.checked;
      else if (kind === "number" || kind === "integer") params[input.dataset.param] = Number(input.value);
      else if (kind === "array") params[input.dataset.param] = input.value.split(",").map(function (part) { return Number(part.trim()); });
      else params[input.dataset.param] = input.value;
    }
    if (Object.keys(params).length) body.params = params;
    const outputName = form.querySelector("input[name=output_name]");
    if (outputName && outputName.value.trim()) body.output_name = outputName.value.trim();
    return body;
  }

  function showError(form, message) {
    const box = form.querySelector(".form-error");
    if (!box) { window.alert(message); return; }
    box.textContent = message;
    box.hidden = false;
    box.setAttribute("tabindex", "-1");
    box.focus();
  }

  function fill(template, answer) {
    return template.replace(/\{(\w+)\}/g, function (_, key) { return encodeURIComponent((answer || {})[key] || ""); });
  }

  async function submitForm(form) {
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const button = form.querySelector("button[type=submit]");
    const errorBox = form.querySelector(".form-error");
    if (errorBox) errorBox.hidden = true;
    if (button) button.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      let body = null;
      let onProgress = null;
      if (form.dataset.kind === "run") body = await runBody(form);
      else if (form.dataset.body === "multipart") {
        body = new FormData(form);
        for (const [key, value] of Array.from(body.entries())) if (value === "") body.delete(key);
        const bar = form.querySelector("progress");
        if (bar) { bar.hidden = false; onProgress = function (percent) { bar.value = percent; }; }
      }
      const result = await send(form.dataset.method || "POST", form.dataset.api, body, onProgress);
      if (!result.ok) throw new FormFailure(problem(result));
      const then = form.dataset.then || "reload";
      if (then === "reload") window.location.reload();
      else if (then === "remove-card") removeCard(form, result.body);
      else window.location.assign(fill(then, result.body));
    } catch (failure) {
      showError(form, failure instanceof FormFailure ? failure.message : "Something went wrong: " + failure);
    } finally {
      if (button) button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  }

  function announce(message) {
    const status = document.getElementById("announcer");
    if (status) status.textContent = message;
  }

  // The API drops only the caller's ownership while others own the same bytes: then the card
  // stays and says so; otherwise it goes, and focus moves to the next card (or the heading).
  function removeCard(form, answer) {
    const card = form.closest(".media-card");
    if (answer && answer.deleted === false) {
      const kept = answer.owners_left + " other owner" + (answer.owners_left === 1 ? "" : "s");
      form.replaceWith(Object.assign(document.createElement("p"), {
        className: "refusal", textContent: "Your ownership was dropped; " + kept + " keep it.",
      }));
      announce("Your ownership was dropped.");
      return;
    }
    const next = card && (card.nextElementSibling || card.previousElementSibling);
    if (card) card.remove();
    const target = (next && next.querySelector("a")) || document.querySelector("h1");
    if (target === document.querySelector("h1")) target.setAttribute("tabindex", "-1");
    target.focus();
    announce("Deleted.");
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.api) return;
    event.preventDefault();
    submitForm(form);
  });

  // --- provenance ---------------------------------------------------------------------------
  // A click on (something inside) an element with ``attribute``: handled by ``handler``(element).
  function onClick(attribute, handler) {
    document.addEventListener("click", function (event) {
      const element = event.target instanceof Element ? event.target.closest("[" + attribute + "]") : null;
      if (!element) return;
      event.preventDefault();
      handler(element);
    });
  }

  onClick("data-verify", async function (link) {
    const verdict = link.parentElement.querySelector("[data-verdict]");
    verdict.className = "verdict";
    verdict.textContent = "Checking signatures, CIDs and hashes…";
    const result = await send("GET", link.dataset.verify, null);
    if (result.ok && result.body.ok) {
      verdict.classList.add("ok");
      const evicted = result.body.evicted || [];
      verdict.textContent = "Verified: signed by " + short(result.body.signer, 12) + "; " + result.body.checked.length + " checks passed" +
        (evicted.length ? "; " + evicted.length + " intermediate outputs evicted by the disk budget (their receipts verify)." : ".");
      const list = document.createElement("ul");
      list.className = "checks";
      result.body.checked.concat(evicted).forEach(function (check) {
        const item = document.createElement("li");
        item.textContent = check;
        list.append(item);
      });
      verdict.append(list);
    } else {
      verdict.classList.add("bad");
      verdict.textContent = result.ok ? "Not verified: " + result.body.problems.join("; ") : problem(result);
    }
  });

  // Re-execution: start it, poll its job until it ends, then list each step's verdict.
  onClick("data-reexecute", async function (button) {
    const shown = button.parentElement.querySelector("[data-reexecution]");
    shown.className = "verdict";
    shown.textContent = "Starting the re-execution…";
    button.disabled = true;
    const started = await send("POST", button.dataset.reexecute, null);
    if (!started.ok) {
      button.disabled = false;
      shown.classList.add("bad");
      shown.textContent = problem(started);
      return;
    }
    let job = started.body;
    while (job.state === "running") {
      shown.textContent = "Re-executing: " + job.progress.done + " of " + job.progress.total + " steps…";
      await new Promise(function (resolve) { window.setTimeout(resolve, 1000); });
      const polled = await send("GET", job.url, null);
      if (!polled.ok) { shown.classList.add("bad"); shown.textContent = problem(polled); button.disabled = false; return; }
      job = polled.body;
    }
    button.disabled = false;
    showReexecution(shown, job);
  });

  function showReexecution(shown, job) {
    if (job.state === "failed") {
      shown.classList.add("bad");
      shown.textContent = "Re-execution failed: " + job.error;
      return;
    }
    const all = job.summary.reproduced === job.progress.total;
    shown.classList.add(all ? "ok" : "bad");
    shown.textContent = (all ? "Reproduced: every step made the same CID here. " : "Not all reproduced: ") +
      Object.keys(job.summary).map(function (name) { return job.summary[name] + " " + name; }).join(", ") +
      ". Signed record " + short(job.record_cid, 12) + ".";
    const list = document.createElement("ul");
    list.className = "checks";
    job.steps.forEach(function (step) {
      const item = document.createElement("li");
      item.textContent = step.step + " (" + step.type + "): " + step.verdict + (step.reason ? " — " + step.reason : "");
      list.append(item);
    });
    shown.append(list);
  }

  // --- live pages -------------------------------------------------------------------------------
  async function freshPage() {
    const response = await fetch(window.location.href, { headers: { Accept: "text/html" }, cache: "no-store" });
    if (!response.ok) return null;
    return new DOMParser().parseFromString(await response.text(), "text/html");
  }

  async function showFinished(root, note) {
    if (note) note.textContent = "Finished; loading the result…";
    const hadFocus = root.contains(document.activeElement);
    const page = await freshPage().catch(function () { return null; });
    const fresh = page && page.getElementById("run");
    if (!fresh) {
      if (note) note.textContent = "Finished. Reload the page to see the result.";
      return;
    }
    const adopted = document.adoptNode(fresh);
    root.replaceWith(adopted);
    announce("Run " + adopted.dataset.status + ".");
    if (hadFocus) {
      const heading = adopted.querySelector("h1");
      heading.setAttribute("tabindex", "-1");
      heading.focus();
    }
  }

  // After a broken stream: the run's record says whether it is over (show the result), gone,
  // or still going (follow it again, a little later each time; events replay harmlessly).
  async function afterStreamLoss(root, note, retryMs) {
    const answer = await send("GET", "/runs/" + encodeURIComponent(root.dataset.runId), null);
    if (answer.status === 404) {
      if (note) note.textContent = "This run no longer exists.";
    } else if (answer.ok && ["completed", "failed", "cancelled"].includes(answer.body.status)) {
      await showFinished(root, note);
    } else {
      if (note) note.textContent = "Connection lost; reconnecting…";
      window.setTimeout(function () { followRun(root, Math.min(retryMs * 2, 30000)); }, retryMs);
    }
  }

  function followRun(root, retryMs) {
    retryMs = retryMs || 1000;
    const stream = new EventSource(root.dataset.events);
    const note = root.querySelector("[data-live-note]");
    function setState(step, state, data) {
      const box = root.querySelector('[data-step="' + CSS.escape(step) + '"]');
      if (box) {
        box.classList.remove("state-pending", "state-running", "state-cached", "state-done", "state-failed");
        box.classList.add("state-" + state);
        const label = box.querySelector("[data-state-label]");
        if (label) label.textContent = state;
        const nodeLabel = box.querySelector("[data-node-label]");
        if (nodeLabel && data.node) nodeLabel.textContent = "on " + short(data.node);
      }
      const row = root.querySelector('[data-step-row="' + CSS.escape(step) + '"]');
      if (row) {
        const cell = row.querySelector("[data-state-cell]");
        cell.className = "badge state-" + state;
        cell.textContent = state;
        if (data.node) row.querySelector("[data-node-cell]").innerHTML = "<code></code>";
        if (data.node) row.querySelector("[data-node-cell] code").textContent = short(data.node, 14);
        if (data.cid) row.querySelector("[data-cid-cell]").textContent = short(data.cid, 14);
      }
    }
    function setStatus(status) {
      const badge = root.querySelector("h1 [data-status]");
      if (badge) { badge.className = "badge status-" + status; badge.dataset.status = status; badge.textContent = status; }
      root.dataset.status = status;
    }
    Object.keys(STEP_EVENTS).forEach(function (kind) {
      stream.addEventListener(kind, function (message) {
        const data = JSON.parse(message.data);
        setState(data.step, STEP_EVENTS[kind], data);
        if (kind === "step_started") setStatus("running");
      });
    });
    // An expansion added steps (cuts from an analysis): draw the plan again, once (the stream
    // replays this event after the reload, when the page already has the steps).
    stream.addEventListener("plan_expanded", function (message) {
      const first = JSON.parse(message.data).first;
      if (first && !root.querySelector('[data-step-row="' + CSS.escape(first) + '"]')) window.location.reload();
    });
    stream.addEventListener("progress", function (message) {
      const percent = JSON.parse(message.data).percent;
      root.querySelector("#run-progress").value = percent;
      root.querySelector("[data-progress-text]").textContent = percent + "%";
    });
    FINAL_EVENTS.forEach(function (kind) {
      stream.addEventListener(kind, function () {
        stream.close();
        showFinished(root, note);
      });
    });
    // The stream ended or failed without a final event (the server closes a finished run's
    // stream; a deleted run or a node restarting refuses it): ask the record what to do.
    stream.addEventListener("error", function () {
      stream.close();
      afterStreamLoss(root, note, retryMs);
    });
    stream.addEventListener("open", function () {
      if (note) note.textContent = "Updating live.";
    });
  }

  // Ages ("3 min ago") change on their own; only other changes are worth a redraw.
  function withoutAges(html) {
    return html.replace(/<time[^>]*>[^<]*<\/time>/g, "");
  }

  function refreshEvery(region) {
    const seconds = Number(region.dataset.liveRefresh) || 5;
    let busy = false;
    window.setInterval(async function () {
      // Not while hidden, not twice at once, and never under the keyboard's focus.
      if (busy || document.visibilityState !== "visible" || region.contains(document.activeElement)) return;
      busy = true;
      try {
        const page = await freshPage();
        const fresh = page && page.getElementById(region.id);
        if (fresh && withoutAges(fresh.innerHTML) !== withoutAges(region.innerHTML)) {
          region.innerHTML = fresh.innerHTML;
        }
      } catch (ignored) {
        // the node is restarting or the network dropped: the next tick tries again
      } finally {
        busy = false;
      }
    }, seconds * 1000);
  }

  function fillMediaChoices() {
    const choices = document.getElementById("media-choices");
    if (!choices) return;
    document.querySelectorAll("select[data-input-pick]").forEach(function (select) {
      select.append(choices.content.cloneNode(true));
    });
  }

  function start() {
    fillMediaChoices();
    const run = document.querySelector("#run[data-events]");
    if (run) followRun(run);
    document.querySelectorAll("[data-live-refresh][id]").forEach(refreshEvery);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
