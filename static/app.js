// Progressive enhancement only: every page works without this file.
document.documentElement.classList.add("js");

(() => {
  "use strict";

  // MARK: Helpers

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const field = (root, name) => root.querySelector(`[data-f="${name}"]`);
  const csrfToken = () => ($('meta[name="csrf-token"]') || {}).content || "";

  /** Words from the page (templates/studio-text.mustache), in the reader's language. */
  const T = ($("#studio-text") || { dataset: {} }).dataset;
  const capital = (word) => word.charAt(0).toUpperCase() + word.slice(1);

  /** "{name}" placeholders, as the server's catalogs write them. */
  const fill = (text, values) =>
    String(text || "").replace(/\{([A-Za-z][A-Za-z0-9_]*)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));

  const durationText = (seconds) => {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return fill(seconds === 1 ? T.secondsOne : T.secondsOther, { count: seconds });
    const minutes = Math.ceil(seconds / 60);
    return fill(minutes === 1 ? T.minutesOne : T.minutesOther, { count: minutes });
  };

  /** Like the server's pages, in the page's language and in UTC: "31 Jan 2025, 14:05 UTC". */
  const dateFormat = (() => {
    const root = document.documentElement;
    const options = { dateStyle: "medium", timeStyle: "short", timeZone: "UTC" };
    try {
      return new Intl.DateTimeFormat(root.dataset.locale || root.lang || undefined, options);
    } catch (error) {
      return new Intl.DateTimeFormat(undefined, options);
    }
  })();
  const dateText = (iso) => {
    const date = new Date(iso);
    return isNaN(date) ? "" : dateFormat.format(date) + " UTC";
  };
  const sizeText = (size) => (size === "auto" ? T.sizeAuto : String(size).replace("x", "×"));
  const qualityText = (quality) => T["quality" + capital(quality)] || quality;
  const statusText = (status) => T["status" + capital(status)] || status;
  const isActive = (task) => task.status === "queued" || task.status === "running";
  const statusClass = (status) => ({ succeeded: "ok", failed: "bad", queued: "active", running: "active" })[status] || "";

  const query = (values) =>
    Object.entries(values)
      .filter(([, value]) => value !== undefined && value !== null && value !== "")
      .map(([key, value]) => `${key}=${encodeURIComponent(value)}`)
      .join("&");

  /** A v4 UUID; crypto.randomUUID only exists on HTTPS and localhost. */
  const uuid = () => {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  };

  class APIError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
    /** No answer at all, or one that may have been cut off: the same request may be retried. */
    get retryable() {
      return this.status === 0 || this.status >= 500;
    }
  }

  /** The JSON API with the session cookie; writes carry the page's CSRF token. */
  async function api(method, url, options = {}) {
    const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
    let body = options.body;
    if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.json);
    }
    let response;
    try {
      response = await fetch(url, { method, headers, body, credentials: "same-origin" });
    } catch (error) {
      throw new APIError(0, "network", T.network || "The connection failed.");
    }
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (!response.ok) {
      const problem = (data && data.error) || {};
      const retryAfter = parseInt(response.headers.get("Retry-After") || "", 10);
      throw new APIError(response.status, problem.code || "error", problem.message || response.statusText, isNaN(retryAfter) ? null : retryAfter);
    }
    return data;
  }

  /** What to tell the person about a failed call, in plain words. */
  const problemText = (error) => {
    if (error.status === 0) return T.network;
    if (error.code === "too_many_active_tasks") return T.busy;
    if (error.status === 429) return fill(T.wait, { time: durationText(error.retryAfter || 5) });
    return error.message;
  };

  const show = (element, visible) => {
    if (element) element.hidden = !visible;
  };

  // The navigation marks where you are.
  for (const link of $$(".nav-links a[href]")) {
    if (link.getAttribute("href") === location.pathname) link.setAttribute("aria-current", "page");
  }

  // MARK: Lists that load more (Activity, Gallery, Credits)

  /**
   * Keyset paging: the feed's data-next is the API's next_before. The "Load more" link (which
   * works without this script) fetches the next page as JSON instead; `endless` loads it when
   * the link scrolls into view.
   */
  function setupFeed(feed, render, key, endless) {
    const list = $("[data-list]", feed);
    const more = $("[data-more]", feed);
    if (!list || !more) return;
    const holder = more.closest(".more") || more;
    const label = more.textContent;
    let next = feed.dataset.next;
    let loading = false;
    let observer = null;

    const note = document.createElement("span");
    note.className = "muted small more-note";
    note.setAttribute("role", "status");
    holder.append(note);

    async function load() {
      if (!next || loading) return;
      loading = true;
      more.textContent = T.loading;
      more.setAttribute("aria-busy", "true");
      note.textContent = "";
      try {
        const url = feed.dataset.api + (feed.dataset.api.includes("?") ? "&" : "?") + "before=" + encodeURIComponent(next);
        const data = await api("GET", url);
        for (const item of data[key] || []) {
          if (!list.querySelector(`[data-id="${item.id}"]`)) list.append(render(item));
        }
        next = data.next_before === null || data.next_before === undefined ? "" : String(data.next_before);
        feed.dataset.next = next;
        if (!next) {
          if (observer) observer.disconnect();
          holder.remove();
          return;
        }
        more.href = more.href.replace(/([?&]before=)\d+/, `$1${next}`);
        if (observer) {
          // Still in view after a short page: look again.
          observer.unobserve(holder);
          observer.observe(holder);
        }
      } catch (error) {
        note.textContent = error.status === 0 ? T.loadFailed : problemText(error);
      } finally {
        loading = false;
        more.textContent = label;
        more.removeAttribute("aria-busy");
      }
    }

    more.addEventListener("click", (event) => {
      event.preventDefault();
      load();
    });
    if (endless && "IntersectionObserver" in window) {
      observer = new IntersectionObserver((entries) => {
        if (entries.some((entry) => entry.isIntersecting)) load();
      }, { rootMargin: "800px 0px" });
      observer.observe(holder);
    }
  }

  // MARK: Activity

  const runAgainURL = (task) =>
    "/create?" + query({ prompt: task.prompt, model: task.model, size: task.size, quality: task.quality, n: task.n });

  function thumbItem(image) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `/gallery#image-${image.id}`;
    const img = document.createElement("img");
    img.src = image.thumb_url;
    img.alt = "";
    img.loading = "lazy";
    img.width = 64;
    img.height = 64;
    link.append(img);
    item.append(link);
    return item;
  }

  /** Fills a task card (server-rendered or from #tpl-task) from the API's task. */
  function updateTaskCard(card, task) {
    card.id = `task-${task.id}`;
    card.dataset.id = task.id;
    card.dataset.status = task.status;
    const owner = field(card, "owner");
    if (owner) {
      owner.textContent = task.owner_email || "";
      owner.hidden = !owner.textContent;
    }
    const badge = field(card, "status");
    badge.textContent = statusText(task.status);
    badge.className = `badge status ${statusClass(task.status)}`;
    const created = field(card, "created");
    created.dateTime = task.created_at;
    created.textContent = dateText(task.created_at);
    const prompt = field(card, "prompt");
    const flat = task.prompt.replace(/\s+/g, " ");
    prompt.textContent = flat.length > 160 ? flat.slice(0, 159).trim() + "…" : flat;
    prompt.title = task.prompt;
    field(card, "meta").textContent = [
      task.model, sizeText(task.size), qualityText(task.quality), fill(task.n === 1 ? T.imagesOne : T.imagesOther, { count: task.n }),
    ].join(" · ");
    const credits = task.credits || {};
    field(card, "credits").textContent = isActive(task)
      ? fill(T.creditsReserved, { credits: credits.reserved })
      : fill(T.creditsCharged, { charged: credits.charged, refunded: credits.refunded });
    field(card, "duration").textContent =
      task.duration_seconds === null || task.duration_seconds === undefined ? "" : " · " + fill(T.took, { time: durationText(task.duration_seconds) });
    const failure = field(card, "failure");
    failure.textContent = task.failure && task.failure.message ? task.failure.message : "";
    failure.hidden = !failure.textContent;
    const images = field(card, "images");
    images.replaceChildren(...(task.images || []).map(thumbItem));
    field(card, "again").href = runAgainURL(task);
    const cancel = field(card, "cancel");
    cancel.action = `/activity/${task.id}/cancel`;
    cancel.hidden = !isActive(task);
  }

  function renderTask(task) {
    const card = $("#tpl-task").content.firstElementChild.cloneNode(true);
    updateTaskCard(card, task);
    return card;
  }

  function setupActivity() {
    for (const feed of $$('[data-feed="tasks"]')) setupFeed(feed, renderTask, "tasks", false);

    // Cancel with the API and update the card in place.
    document.addEventListener("submit", async (event) => {
      const form = event.target;
      if (!(form instanceof HTMLFormElement) || form.dataset.f !== "cancel") return;
      event.preventDefault();
      const card = form.closest(".task");
      const button = $("button", form);
      const label = button.textContent;
      button.disabled = true;
      button.textContent = T.canceling;
      try {
        updateTaskCard(card, await api("POST", `/api/v1/generations/${card.dataset.id}/cancel`));
      } catch (error) {
        try {
          updateTaskCard(card, await api("GET", `/api/v1/generations/${card.dataset.id}`));
        } catch (ignored) {
          // Keep the card as it was.
        }
        if (error.code !== "already_finished") {
          const failure = field(card, "failure");
          failure.textContent = `${T.cancelFailed} ${problemText(error)}`;
          failure.hidden = false;
        }
      } finally {
        button.disabled = false;
        button.textContent = label;
      }
    });

    // Queued and running tasks change on their own: look again every few seconds.
    const refresh = async () => {
      if (!document.hidden) {
        for (const card of $$('.task[data-status="queued"], .task[data-status="running"]').slice(0, 20)) {
          try {
            updateTaskCard(card, await api("GET", `/api/v1/generations/${card.dataset.id}`));
          } catch (error) {
            // Try again next time.
          }
        }
      }
      if ($$('.task[data-status="queued"], .task[data-status="running"]').length) setTimeout(refresh, 3000);
    };
    if ($$('.task[data-status="queued"], .task[data-status="running"]').length) setTimeout(refresh, 2000);
  }

  // MARK: Gallery

  function renderImage(image) {
    const item = document.createElement("li");
    item.id = `image-${image.id}`;
    Object.assign(item.dataset, {
      id: image.id,
      prompt: image.prompt,
      model: image.model,
      size: sizeText(image.size),
      quality: qualityText(image.quality),
      width: image.width,
      height: image.height,
      created: dateText(image.created_at),
      file: image.url,
      download: `${image.url}?download=1`,
      remix: "/create?" + query({ prompt: image.prompt, model: image.model, size: image.size, quality: image.quality }),
      reference: `/create?ref=${image.id}`,
    });
    const link = document.createElement("a");
    link.className = "tile";
    link.href = image.url;
    const img = document.createElement("img");
    img.src = image.thumb_url;
    img.alt = image.prompt;
    img.loading = "lazy";
    img.width = 256;
    img.height = 256;
    link.append(img);
    item.append(link);
    return item;
  }

  function setupGallery() {
    const feed = $('[data-feed="images"]');
    if (!feed) return;
    setupFeed(feed, renderImage, "images", true);
    const grid = $("[data-list]", feed);
    const dialog = $("#lightbox");
    if (!dialog || typeof dialog.showModal !== "function") return;
    const img = $("#lightbox-img");
    const error = $("#lightbox-error");
    let current = null;

    const items = () => $$("li[data-id]", grid);

    function open(item) {
      current = item;
      const data = item.dataset;
      img.src = data.file;
      img.alt = data.prompt;
      img.width = Number(data.width) || 1024;
      img.height = Number(data.height) || 1024;
      $("#lightbox-prompt").textContent = data.prompt;
      $("#lightbox-model").textContent = data.model;
      $("#lightbox-size").textContent = data.size;
      $("#lightbox-quality").textContent = data.quality;
      $("#lightbox-dimensions").textContent = `${data.width} × ${data.height}`;
      $("#lightbox-created").textContent = data.created;
      $("#lightbox-download").href = data.download;
      $("#lightbox-remix").href = data.remix;
      $("#lightbox-reference").href = data.reference;
      show(error, false);
      const list = items();
      const index = list.indexOf(item);
      $("#lightbox-prev").disabled = index <= 0;
      $("#lightbox-next").disabled = index >= list.length - 1;
      if (!dialog.open) dialog.showModal();
      if (history.replaceState) history.replaceState(null, "", `#image-${data.id}`);
    }

    function step(offset) {
      if (!current) return;
      const list = items();
      const target = list[list.indexOf(current) + offset];
      if (target) open(target);
    }

    dialog.addEventListener("close", () => {
      if (history.replaceState) history.replaceState(null, "", location.pathname + location.search);
      const link = current && current.isConnected ? $("a", current) : null;
      if (link) link.focus();
      img.removeAttribute("src");
    });

    grid.addEventListener("click", (event) => {
      const link = event.target.closest("a.tile");
      if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      open(link.closest("li"));
    });
    $("#lightbox-close").addEventListener("click", () => dialog.close());
    $("#lightbox-prev").addEventListener("click", () => step(-1));
    $("#lightbox-next").addEventListener("click", () => step(1));
    // A click on the backdrop (outside the panel) closes.
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close();
    });
    dialog.addEventListener("keydown", (event) => {
      if (event.key === "ArrowLeft") {
        event.preventDefault();
        step(-1);
      } else if (event.key === "ArrowRight") {
        event.preventDefault();
        step(1);
      }
    });

    $("#lightbox-delete").addEventListener("click", async () => {
      if (!current || !window.confirm(feed.dataset.deleteConfirm)) return;
      const item = current;
      const button = $("#lightbox-delete");
      button.disabled = true;
      try {
        await api("DELETE", `/api/v1/images/${item.dataset.id}`);
        const list = items();
        const index = list.indexOf(item);
        const neighbour = list[index + 1] || list[index - 1];
        item.remove();
        if (neighbour) {
          open(neighbour);
        } else {
          current = null;
          dialog.close();
        }
        if (!items().length && !$("[data-empty]", feed) && !feed.dataset.next) {
          const empty = document.createElement("div");
          empty.className = "empty-state";
          empty.dataset.empty = "";
          const text = document.createElement("p");
          text.textContent = feed.dataset.emptyText || "";
          empty.append(text);
          feed.prepend(empty);
        }
      } catch (failure) {
        error.textContent = `${feed.dataset.deleteFailed} ${problemText(failure)}`;
        show(error, true);
      } finally {
        button.disabled = false;
      }
    });

    // /gallery#image-12 (from Create and Activity) opens that image.
    const match = location.hash.match(/^#image-(\d+)$/);
    if (match) {
      const item = $(`#image-${match[1]}`);
      if (item) open(item);
    }
  }

  // MARK: Credits

  function renderEntry(entry) {
    const row = $("#tpl-entry").content.firstElementChild.cloneNode(true);
    row.id = `entry-${entry.id}`;
    row.dataset.id = entry.id;
    field(row, "created").textContent = dateText(entry.created_at);
    const kind = field(row, "kind");
    kind.textContent = T["kind" + capital(entry.kind)] || entry.kind;
    kind.classList.add(`kind-${entry.kind}`);
    const amount = field(row, "amount");
    amount.textContent = entry.amount > 0 ? `+${entry.amount}` : entry.amount < 0 ? `\u2212${-entry.amount}` : "0";
    amount.classList.add(entry.amount > 0 ? "plus" : entry.amount < 0 ? "minus" : "zero");
    field(row, "after").textContent = entry.balance_after;
    field(row, "reason").textContent = entry.reason;
    if (entry.task_id) {
      const task = field(row, "task");
      task.hidden = false;
      $("a", task).href = `/activity?before=${entry.task_id + 1}#task-${entry.task_id}`;
      field(row, "task-id").textContent = entry.task_id;
    }
    return row;
  }

  function setupCredits() {
    const feed = $('[data-feed="ledger"]');
    if (feed) setupFeed(feed, renderEntry, "entries", false);
  }

  // MARK: Create

  function setupCreate() {
    const form = $("#create-form");
    if (!form) return;
    const words = form.dataset;
    const prompt = $("#prompt");
    const submitButton = $("#create-submit");
    const submitLabel = submitButton.textContent;
    const price = $("#price");
    const problem = $("#submit-problem");
    const problemText_ = $("#submit-problem-text");
    const problemLink = $("#submit-problem-link");
    const createError = $("#create-error");
    const refList = $("#ref-list");
    const refsMessage = $("#refs-message");
    const refsCount = $("#refs-count");
    const fileInput = $("#ref-files");
    const dropzone = $("#dropzone");
    const results = $("#results");
    const resultList = $("#result-list");
    const maxRefs = Number(words.maxRefs) || 16;
    const uploadMB = Number(words.uploadMb) || 20;

    /** Reference images: {uploadId, status: "uploading" | "ready" | "error", element}. */
    const refs = [];
    let quote = { affordable: !submitButton.disabled, credits: null, balance: Number(words.balance) };
    let quoteProblem = null;
    let waitUntil = 0;
    let busy = false;
    /** The last submit that got no clear answer: retrying it sends the same Idempotency-Key. */
    let pending = null;

    // MARK: Submit button state

    function blocker() {
      if (Date.now() < waitUntil) return { text: fill(T.wait, { time: durationText((waitUntil - Date.now()) / 1000) }) };
      if (refs.some((ref) => ref.status === "uploading")) return { text: words.waitUploads };
      if (refs.some((ref) => ref.status === "error")) return { text: words.fixUploads };
      if (quoteProblem) return { text: quoteProblem };
      if (!quote.affordable) return { text: fill(words.unaffordable, { credits: quote.credits, balance: quote.balance }), link: true };
      return null;
    }

    function refreshButton() {
      const reason = blocker();
      submitButton.disabled = busy || !!reason;
      submitButton.textContent = busy ? words.submitting : submitLabel;
      show(problem, !!reason);
      if (reason) {
        problemText_.textContent = reason.text;
        show(problemLink, !!reason.link);
      }
    }

    // MARK: Price

    let quoteTimer = null;
    let quoteSequence = 0;
    function requestQuote() {
      clearTimeout(quoteTimer);
      price.classList.add("stale");
      quoteTimer = setTimeout(async () => {
        const sequence = ++quoteSequence;
        try {
          const answer = await api("POST", "/api/v1/quote", {
            json: {
              model: $("#model").value, size: $("#size").value, quality: $("#quality").value, n: Number($("#count").value),
              reference_count: refs.filter((ref) => ref.status !== "error").length,
            },
          });
          if (sequence !== quoteSequence) return;
          quote = answer;
          quoteProblem = null;
          price.textContent = fill(answer.credits === 1 ? words.priceOne : words.priceOther, { credits: answer.credits, balance: answer.balance });
        } catch (error) {
          if (sequence !== quoteSequence) return;
          // Without an answer the last price stands; a refused request says why.
          quoteProblem = error.status === 0 ? null : problemText(error);
        } finally {
          if (sequence === quoteSequence) price.classList.remove("stale");
          refreshButton();
        }
      }, 120);
    }

    for (const select of $$("select", form)) select.addEventListener("change", requestQuote);

    // MARK: Reference images

    function countRefs() {
      const kept = refs.filter((ref) => ref.status !== "error").length;
      refsCount.textContent = refs.length ? fill(words.refsCount, { count: kept, max: maxRefs }) : "";
    }

    function addRef(preview, name) {
      const element = $("#tpl-ref").content.firstElementChild.cloneNode(true);
      const img = field(element, "img");
      // A file the browser cannot show (not a picture) gets its extension instead.
      img.addEventListener("error", () => {
        element.classList.add("broken");
        const file = field(element, "file");
        file.textContent = (name.match(/\.([A-Za-z0-9]{1,5})$/) || ["", "?"])[1];
        file.hidden = false;
      });
      img.src = preview;
      img.alt = name;
      const remove = field(element, "remove");
      remove.setAttribute("aria-label", fill(words.remove, { name }));
      remove.title = fill(words.remove, { name });
      const ref = { uploadId: null, status: "uploading", element, preview, name };
      setRefStatus(ref, "uploading", words.uploading);
      remove.addEventListener("click", () => removeRef(ref));
      refs.push(ref);
      refList.append(element);
      countRefs();
      requestQuote();
      return ref;
    }

    function setRefStatus(ref, status, message) {
      ref.status = status;
      ref.element.dataset.status = status;
      const label = field(ref.element, "status");
      label.textContent = message || "";
      label.hidden = !message;
      countRefs();
      refreshButton();
    }

    function removeRef(ref) {
      const index = refs.indexOf(ref);
      if (index < 0) return;
      refs.splice(index, 1);
      if (ref.preview.startsWith("blob:")) URL.revokeObjectURL(ref.preview);
      ref.element.remove();
      show(refsMessage, false);
      // Keep the keyboard where it was: the next image's remove button, or the file picker.
      const next = refs[index] || refs[index - 1];
      (next ? field(next.element, "remove") : fileInput).focus();
      countRefs();
      requestQuote();
      refreshButton();
    }

    function uploadFailure(error, name) {
      if (error.code === "not_an_image") return fill(words.notImage, { name });
      if (error.code === "too_large" || error.status === 413) return fill(words.tooLarge, { name, mb: uploadMB });
      return problemText(error);
    }

    async function upload(ref, request) {
      try {
        const answer = await request();
        if (!refs.includes(ref)) return;
        ref.uploadId = answer.id;
        setRefStatus(ref, "ready", "");
      } catch (error) {
        if (!refs.includes(ref)) return;
        setRefStatus(ref, "error", uploadFailure(error, ref.name));
        requestQuote();
      }
    }

    function addFiles(files) {
      show(refsMessage, false);
      for (const file of files) {
        if (refs.filter((ref) => ref.status !== "error").length >= maxRefs) {
          refsMessage.textContent = fill(words.tooMany, { max: maxRefs });
          show(refsMessage, true);
          break;
        }
        const ref = addRef(URL.createObjectURL(file), file.name || "image");
        if (file.type && !file.type.startsWith("image/")) {
          setRefStatus(ref, "error", fill(words.notImage, { name: ref.name }));
          continue;
        }
        if (file.size > uploadMB * 1048576) {
          setRefStatus(ref, "error", fill(words.tooLarge, { name: ref.name, mb: uploadMB }));
          continue;
        }
        const body = new FormData();
        body.append("file", file, file.name || "image");
        upload(ref, () => api("POST", "/api/v1/uploads", { body }));
      }
      requestQuote();
    }

    function addFromGallery(id) {
      if (refs.filter((ref) => ref.status !== "error").length >= maxRefs) return;
      const ref = addRef(`/api/v1/images/${id}/thumb`, fill(words.fromGallery, { id }));
      upload(ref, () => api("POST", "/api/v1/uploads", { json: { image_id: Number(id) } }));
    }

    fileInput.addEventListener("change", () => {
      addFiles(Array.from(fileInput.files || []));
      fileInput.value = "";
    });
    let dragDepth = 0;
    form.addEventListener("dragenter", (event) => {
      if (!Array.from(event.dataTransfer.types || []).includes("Files")) return;
      dragDepth += 1;
      dropzone.classList.add("dragging");
    });
    form.addEventListener("dragleave", () => {
      dragDepth = Math.max(0, dragDepth - 1);
      if (!dragDepth) dropzone.classList.remove("dragging");
    });
    form.addEventListener("dragover", (event) => {
      if (!Array.from(event.dataTransfer.types || []).includes("Files")) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    });
    form.addEventListener("drop", (event) => {
      if (!event.dataTransfer.files.length) return;
      event.preventDefault();
      dragDepth = 0;
      dropzone.classList.remove("dragging");
      addFiles(Array.from(event.dataTransfer.files));
    });
    // A pasted picture becomes a reference too.
    document.addEventListener("paste", (event) => {
      const files = Array.from((event.clipboardData && event.clipboardData.files) || []).filter((file) => file.type.startsWith("image/"));
      if (!files.length) return;
      event.preventDefault();
      addFiles(files);
    });

    // MARK: Submit and follow the task

    const resultWords = results.dataset;

    function updateResult(card, task) {
      card.dataset.status = task.status;
      const badge = field(card, "status");
      badge.textContent = statusText(task.status);
      badge.className = `badge status ${statusClass(task.status)}`;
      const progress = field(card, "progress");
      const message = field(card, "message");
      progress.hidden = !isActive(task);
      if (task.status === "queued") {
        progress.removeAttribute("value");
        message.textContent = resultWords.queued;
      } else if (task.status === "running") {
        progress.value = task.progress || 0;
        message.textContent = task.note
          ? fill(resultWords.retrying, { message: task.note })
          : fill(resultWords.running, { progress: task.progress || 0 });
      } else if (task.status === "succeeded") {
        message.textContent = resultWords.done;
      } else if (task.status === "failed") {
        message.textContent = fill(resultWords.failed, { message: (task.failure && task.failure.message) || "" });
      } else {
        message.textContent = resultWords.canceled;
      }
      message.classList.toggle("bad", task.status === "failed");
      const images = field(card, "images");
      images.replaceChildren(...(task.images || []).map(thumbItem));
      show(field(card, "gallery"), task.status === "succeeded");
      show(field(card, "cancel"), isActive(task));
    }

    function setProgress(card, value) {
      if (card.dataset.status !== "running" && card.dataset.status !== "queued") return;
      const progress = field(card, "progress");
      progress.value = value;
      field(card, "message").textContent = fill(resultWords.running, { progress: value });
    }

    let streams = 0;
    function follow(task, card) {
      const finished = () => requestQuote();
      // Browsers allow few connections per site: past four live streams, poll instead.
      if (window.EventSource && streams < 4) {
        streams += 1;
        const source = new EventSource(`/api/v1/generations/${task.id}/events`);
        let closed = false;
        const close = () => {
          if (closed) return;
          closed = true;
          streams -= 1;
          source.close();
        };
        source.addEventListener("task", (event) => {
          const current = JSON.parse(event.data);
          updateResult(card, current);
          if (!isActive(current)) {
            close();
            finished();
          }
        });
        source.addEventListener("progress", (event) => setProgress(card, JSON.parse(event.data).progress));
        source.addEventListener("error", () => {
          // The browser reconnects by itself unless the stream was refused; then poll.
          if (source.readyState === EventSource.CLOSED && !closed) {
            close();
            poll(task.id, card, finished);
          }
        });
      } else {
        poll(task.id, card, finished);
      }
    }

    function poll(id, card, finished) {
      setTimeout(async () => {
        try {
          const task = await api("GET", `/api/v1/generations/${id}`);
          updateResult(card, task);
          if (!isActive(task)) return finished();
        } catch (error) {
          // Try again.
        }
        poll(id, card, finished);
      }, 2000);
    }

    function addResult(task) {
      const card = $("#tpl-result").content.firstElementChild.cloneNode(true);
      card.dataset.id = task.id;
      const text = field(card, "prompt");
      text.textContent = task.prompt;
      field(card, "cancel").addEventListener("click", async (event) => {
        const button = event.currentTarget;
        button.disabled = true;
        try {
          updateResult(card, await api("POST", `/api/v1/generations/${task.id}/cancel`));
          requestQuote();
        } catch (error) {
          if (error.code !== "already_finished") field(card, "message").textContent = `${T.cancelFailed} ${problemText(error)}`;
        } finally {
          button.disabled = false;
        }
      });
      updateResult(card, task);
      resultList.prepend(card);
      show(results, true);
      return card;
    }

    function waitFor(seconds) {
      waitUntil = Date.now() + seconds * 1000;
      const tick = () => {
        refreshButton();
        if (Date.now() < waitUntil) setTimeout(tick, 1000);
      };
      tick();
    }

    async function submit() {
      if (busy) return;
      show(createError, false);
      if (!prompt.value.trim()) {
        prompt.focus();
        prompt.reportValidity();
        return;
      }
      if (blocker()) {
        refreshButton();
        return;
      }
      const body = JSON.stringify({
        prompt: prompt.value.trim(),
        model: $("#model").value,
        size: $("#size").value,
        quality: $("#quality").value,
        n: Number($("#count").value),
        reference_upload_ids: refs.filter((ref) => ref.status === "ready").map((ref) => ref.uploadId),
      });
      // A new click is a new request, unless it repeats one that got no answer.
      if (!pending || pending.body !== body) pending = { body, key: uuid() };
      busy = true;
      refreshButton();
      try {
        const task = await api("POST", "/api/v1/generations", {
          body,
          headers: { "Content-Type": "application/json", "Idempotency-Key": pending.key },
        });
        pending = null;
        follow(task, addResult(task));
        requestQuote();
      } catch (error) {
        if (!error.retryable) pending = null;
        if (error.status === 429) waitFor(error.retryAfter || 5);
        createError.textContent = error.status === 402 ? `${words.insufficient} ${error.message}` : problemText(error);
        // A plain rate limit is already said, with its countdown, beside the button.
        show(createError, error.code !== "rate_limited");
        if (error.status === 402) requestQuote();
      } finally {
        busy = false;
        refreshButton();
      }
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit();
    });
    form.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        submit();
      }
    });

    // ?ref=12 (Use as reference): attach those images.
    for (const id of (words.refs || "").split(",").filter(Boolean)) addFromGallery(id);
    countRefs();
    refreshButton();
  }

  // After Checkout: the credits come with Stripe's webhook, so ask until they have landed.
  function setupBillingSuccess() {
    const box = $("#billing-success");
    if (!box || box.dataset.landed === "true") return;
    let tries = 0;
    const poll = async () => {
      tries += 1;
      try {
        const response = await fetch(box.dataset.statusUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (response.ok) {
          const status = await response.json();
          if (status.failed) {
            $("#billing-waiting").hidden = true;
            $("#billing-failed").hidden = false;
            return;
          }
          if (status.landed) {
            $("#billing-balance").textContent = status.balance;
            $("#billing-waiting").hidden = true;
            $("#billing-landed").hidden = false;
            return;
          }
        }
      } catch (_) {
        // Offline for a moment: the next try may work.
      }
      if (tries < 150) setTimeout(poll, tries < 20 ? 1000 : 4000);
    };
    setTimeout(poll, 1000);
  }

  // MARK: Analytics beacon

  /** Only on pages counted for someone who accepted analytics (the server adds the meta
   *  then): one small first-party POST with the screen width, bucketed by the server. */
  const sendBeacon = () => {
    const meta = $('meta[name="easel-beacon"]');
    if (!meta || !navigator.sendBeacon) return;
    const body = new URLSearchParams({ v: meta.content, w: String(Math.round((window.screen && screen.width) || window.innerWidth || 0)), _csrf: meta.dataset.csrf || "" });
    navigator.sendBeacon("/a/beacon", body);
  };
  sendBeacon();

  const page = ($("[data-page]") || { dataset: {} }).dataset.page;
  if (page === "billing-success") setupBillingSuccess();
  if (page === "create") setupCreate();
  if (page === "activity") setupActivity();
  if (page === "gallery") setupGallery();
  if (page === "credits") setupCredits();
})();
