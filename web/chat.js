// The chat page: one WebSocket to ./ws speaking the protocol of docs/protocol.md.
// Only what must survive a reload is stored: in localStorage, shared by the tabs, the token,
// last_seq and lang; in sessionStorage, the tab's own, its outbox. The conversation itself is
// always rebuilt from the server's history. What localStorage refuses to keep (a full quota) is
// kept in sessionStorage, and what that refuses too (blocked site data) in memory.

const KEYS = {
  resume: 'chatbot.resume',
  lastSeq: 'chatbot.last_seq',
  lang: 'chatbot.lang',
  outbox: 'chatbot.outbox',
};
const BACKOFF_BASE_MS = 250;
const BACKOFF_CAP_MS = 4000;
const OFFLINE_AFTER_FAILURES = 4;
const PING_EVERY_MS = 25000;
const PONG_TIMEOUT_MS = 10000;
const CONNECT_TIMEOUT_MS = 10000;  // an attempt without a welcome by then has hung: try again
const RATE_LIMIT_RETRY_MS = 3000;
const CLOSE_TOO_LARGE = 1009;
const HISTORY_ON_LOAD = 100;
const HISTORY_PAGE = 50;
const STICK_TO_BOTTOM_PX = 48;
const SECRET_MASK = '••••••';

const STRINGS = {
  en: {
    title: 'Chat', conversation: 'Conversation', language: 'Language',
    message: 'Message', send: 'Send', placeholder: 'Type a message',
    login: 'Log in', register: 'Register', logout: 'Log out', signedInAs: 'Signed in as',
    connected: 'Connected', reconnecting: 'Reconnecting…', offline: 'Offline',
    bot: 'Bot', you: 'You', sending: 'sending…', notSent: 'not sent',
    earlier: 'Show earlier messages',
    expired: 'Your previous conversation has expired. A new one has started.',
    missed: 'Some messages from while you were away are no longer available.',
    passwordPlaceholder: 'Password (hidden)',
    passwordHint: 'What you type here is hidden and never shown in the chat.',
    passwordOffline: 'A password can only be sent while connected.',
    tooLarge: 'too long for this server',
    // What the server's error codes mean to a person; other codes show the server's own message.
    errors: {
      internal_error: 'the server could not handle it; send it again',
      pattern_timeout: 'the bot could not read this text in time; try a shorter one',
      secret_not_expected: 'the bot no longer asks for a password; it was not kept',
      text_too_long: 'too long for this server',
      too_many_sessions: 'too many new conversations from your network just now; trying again shortly',
    },
  },
  ru: {
    title: 'Чат', conversation: 'Разговор', language: 'Язык',
    message: 'Сообщение', send: 'Отправить', placeholder: 'Введите сообщение',
    login: 'Войти', register: 'Зарегистрироваться', logout: 'Выйти', signedInAs: 'Вы вошли как',
    connected: 'Подключено', reconnecting: 'Переподключение…', offline: 'Нет связи',
    bot: 'Бот', you: 'Вы', sending: 'отправляется…', notSent: 'не отправлено',
    earlier: 'Показать более ранние сообщения',
    expired: 'Прежний разговор истёк. Начат новый.',
    missed: 'Часть сообщений, пришедших, пока вас не было, больше недоступна.',
    passwordPlaceholder: 'Пароль (скрыт)',
    passwordHint: 'То, что вы вводите здесь, скрыто и не показывается в чате.',
    passwordOffline: 'Пароль можно отправить только при связи с сервером.',
    tooLarge: 'слишком длинное для этого сервера',
    errors: {
      internal_error: 'сервер не смог это обработать; отправьте ещё раз',
      pattern_timeout: 'бот не успел прочитать этот текст; попробуйте покороче',
      secret_not_expected: 'бот больше не спрашивает пароль; он не сохранён',
      text_too_long: 'слишком длинное для этого сервера',
      too_many_sessions: 'из вашей сети только что начато слишком много разговоров; скоро попробуем снова',
    },
  },
};

const $ = (id) => document.getElementById(id);
const ui = {
  log: $('log'), earlier: $('earlier'), form: $('composer'), input: $('input'), send: $('send'),
  hint: $('hint'), status: $('status'), userBox: $('user-box'), userName: $('user-name'),
  login: $('login'), register: $('register'), logout: $('logout'),
  langButtons: document.querySelectorAll('[data-lang]'),
};

// What sessionStorage failed to keep (disabled, blocked or full), by `area:key`. It is newer than
// what the storage may still hold: without it a page whose storage throws would lose its token
// and, at the next reconnect, silently start a new session.
const unsaved = new Map();

const state = {
  ws: null,
  connected: false,        // true between welcome and close
  failures: 0,             // consecutive attempts without a welcome: drives backoff
  retryTimer: null,
  connectTimer: null,
  pingTimer: null,
  pongTimer: null,
  leaving: false,          // the page is being hidden: do not reconnect
  needHistory: true,       // the display was built from nothing: ask for history
  sentToken: null,         // the token the current hello carried, if any
  askedHistory: false,     // the current hello asked for history (not for what followed last_seq)
  langUnsent: false,       // the user picked a language the server has not been told yet
  session: null,           // id of the session whose conversation is on display
  accountAction: null,     // id of the login/register/logout action awaiting its ack
  loadingEarlier: false,
  sentSizes: [],           // [id, bytes] of the frames sent on this connection
  holdTimer: null,         // set after a rate_limited refusal: the outbox waits until it fires
  secretWaits: false,      // a password was sent while the outbox waited: it goes when the outbox does
  resendFrom: null,        // the seq the entries resent for the hello's last_seq start at
  lang: pickLanguage(),
  lastSeq: Number(load(KEYS.lastSeq)) || 0,
  user: null,
  inputMode: 'text',
  idPrefix: `c-${randomTag()}`,
  idCounter: 0,
};

// Elements of the log are kept sorted by a numeric key: the entry's seq when known.
// A message still waiting for its ack has key Infinity (it stays at the bottom) until its
// first reply tells where it belongs; notes take a key just after what was shown before them.
const sortKeys = new WeakMap();
const bySeq = new Map();   // seq -> element, to skip entries already shown
const byId = new Map();    // client id -> user bubble, to merge echoes and acks

// ---------- storage, ids, strings ----------

function read(area, key) {
  const slot = `${area}:${key}`;
  if (unsaved.has(slot)) return unsaved.get(slot);
  try { return window[area].getItem(key); } catch { return null; }  // even the getter may throw
}

function write(area, key, value) {
  const text = value === null || value === undefined ? null : String(value);
  try {
    if (text === null) window[area].removeItem(key);
    else window[area].setItem(key, text);
    unsaved.delete(`${area}:${key}`);
  } catch {
    unsaved.set(`${area}:${key}`, text);  // a full or disabled storage must not break the chat
  }
}

// localStorage is shared by the tabs and its quota by the whole site: it may be full. What it
// refuses is kept in this tab's sessionStorage, which survives a reload, as {value, over}: `over`
// is the shared value it is newer than (say, the token from before a login). Once another tab
// has stored something else there, that is newer, and counts again.
function load(key) {
  const shared = read('localStorage', key);
  let kept = null;
  try { kept = JSON.parse(read('sessionStorage', `${key}.fallback`)); } catch { /* none */ }
  return kept?.over === shared ? kept.value : shared;
}

function save(key, value) {
  const text = value === null || value === undefined ? null : String(value);
  const fallback = `${key}.fallback`;
  try {
    if (text === null) localStorage.removeItem(key);
    else localStorage.setItem(key, text);
    write('sessionStorage', fallback, null);
  } catch {
    write('sessionStorage', fallback, JSON.stringify({ value: text, over: read('localStorage', key) }));
  }
}

function randomTag() {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return Array.from(bytes, (b) => b.toString(36).padStart(2, '0')).join('');
}

function newId() {
  state.idCounter += 1;
  return `${state.idPrefix}-${state.idCounter}`;
}

function t(key) {
  return STRINGS[state.lang][key];
}

function pickLanguage() {
  const stored = load(KEYS.lang);
  if (stored in STRINGS) return stored;
  return (navigator.language || 'en').toLowerCase().startsWith('ru') ? 'ru' : 'en';
}

const isSeq = (value) => Number.isInteger(value) && value > 0;
const asText = (value) => (typeof value === 'string' ? value : '');

// ---------- outbox: frames sent but not yet acknowledged ----------
// In the tab's own sessionStorage (it survives a reload): each tab resends only what it sent.
// A tab that resent another's frames would get their acks, and the tab that wrote them would
// wait for acks that never come.
function loadOwn(key) {
  return read('sessionStorage', key);
}

function saveOwn(key, value) {
  write('sessionStorage', key, value);
}

function outboxRead() {
  try {
    const list = JSON.parse(loadOwn(KEYS.outbox) || '[]');
    return Array.isArray(list) ? list.filter((f) => f && typeof f.id === 'string') : [];
  } catch { return []; }
}

function outboxAdd(frame) {
  saveOwn(KEYS.outbox, JSON.stringify([...outboxRead(), frame]));
}

// A frame over the server's size limit closes the connection (1009): sending it again after
// every reconnect would only repeat that. The largest (in bytes, as the server counts) of the
// queued frames sent on that connection is given up instead.
function dropLargestSent() {
  const sent = new Map(state.sentSizes);
  const queued = outboxRead().filter((frame) => sent.has(frame.id));
  if (!queued.length) return;  // e.g. a password, which is never queued: it is marked not sent anyway
  const largest = queued.reduce((a, b) => (sent.get(b.id) > sent.get(a.id) ? b : a));
  outboxRemove(largest.id);
  const bubble = byId.get(largest.id);
  if (bubble) markNotSent(bubble, t('tooLarge'));
}

function outboxRemove(id) {
  const list = outboxRead();
  const rest = list.filter((frame) => frame.id !== id);
  if (rest.length !== list.length) saveOwn(KEYS.outbox, rest.length ? JSON.stringify(rest) : null);
}

// ---------- connection ----------

function socketUrl() {
  const url = new URL('ws', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

function connect() {
  clearTimeout(state.retryTimer);
  state.retryTimer = null;
  if (state.ws || state.leaving) return;
  let ws;
  try {
    ws = new WebSocket(socketUrl());
  } catch {
    scheduleReconnect(true);  // e.g. blocked by a content security policy: keep trying, slowly
    return;
  }
  state.ws = ws;
  state.sentSizes = [];
  // A network can accept the connection and then never answer: without a limit the page would
  // say "Reconnecting…" for minutes. A welcome clears it; otherwise the attempt counts as failed.
  clearTimeout(state.connectTimer);
  state.connectTimer = setTimeout(() => { if (state.ws === ws) disconnected(); }, CONNECT_TIMEOUT_MS);
  ws.onopen = () => sendHello();
  ws.onmessage = (event) => onFrame(event.data);
  ws.onclose = (event) => {
    if (state.ws !== ws) return;
    if (event.code === CLOSE_TOO_LARGE) dropLargestSent();
    disconnected();
  };
  showStatus();
}

function sendHello() {
  // The hello sets the session's language: it must be the one picked last, in any tab, and not
  // what this tab showed before another picked a new one (a storage event can be missed, e.g.
  // by a page kept in the back/forward cache).
  followLanguage(load(KEYS.lang));
  const hello = { type: 'hello', lang: state.lang };
  const token = load(KEYS.resume);
  if (token) hello.resume = token;
  if (state.needHistory) hello.history = HISTORY_ON_LOAD;
  else hello.last_seq = state.lastSeq;
  state.resendFrom = state.needHistory ? null : state.lastSeq + 1;  // see checkResent
  state.sentToken = token || null;
  state.askedHistory = state.needHistory;
  state.langUnsent = false;
  send(hello);
}

function send(frame) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
  const text = JSON.stringify(frame);
  state.ws.send(text);
  if (typeof frame.id === 'string') state.sentSizes.push([frame.id, new TextEncoder().encode(text).length]);
  return true;
}

// Called once per lost socket, whether it closed cleanly, went silent or never answered.
function disconnected() {
  const failed = !state.connected;  // the attempt never got its welcome
  try {
    keepingFocus(() => {
      dropSocket();
      state.connected = false;
      state.loadingEarlier = false;
      setUnusable(ui.earlier, false);  // its answer will not come: let it be asked again
      failUnqueuedMessages();
      refreshControls();
    });
  } finally {
    // Whatever the display did, the page must come back.
    if (!state.leaving) scheduleReconnect(failed);
  }
}

function dropSocket() {
  const ws = state.ws;
  state.ws = null;
  if (ws) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    if (ws.readyState <= WebSocket.OPEN) ws.close();
  }
  clearTimeout(state.connectTimer);
  clearInterval(state.pingTimer);
  clearTimeout(state.pongTimer);
}

function scheduleReconnect(failed) {
  // Only failed attempts count: the close of a connection that worked is no failure, or "Offline"
  // would show an attempt early.
  if (failed) state.failures += 1;
  // Full jitter spreads the reconnects of many pages after a server restart.
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** state.failures);
  showStatus();
  clearTimeout(state.retryTimer);
  state.retryTimer = setTimeout(connect, Math.random() * ceiling);
}

function reconnectNow() {
  if (state.leaving) return;
  // An attempt still connecting may hang on the network the browser has just left: start afresh.
  if (state.ws?.readyState === WebSocket.CONNECTING) dropSocket();
  if (state.ws) return;
  state.failures = 0;
  connect();
}

// Browsers cannot send WebSocket pings; a half-open connection is only noticed by silence.
function startKeepalive() {
  clearInterval(state.pingTimer);
  state.pingTimer = setInterval(ping, PING_EVERY_MS);
}

function ping() {
  if (!state.connected || !send({ type: 'ping' })) return;
  clearTimeout(state.pongTimer);
  state.pongTimer = setTimeout(disconnected, PONG_TIMEOUT_MS);
}

// The browser lost or found a network. A connection from before may have died without a close,
// which the keepalive alone would notice only after up to 35 s: a ping now finds out within 10 s.
function networkChanged() {
  showStatus();
  ping();
  if (navigator.onLine) reconnectNow();  // nothing to do while a connection is open
}

// ---------- incoming frames ----------

const handlers = {
  welcome: onWelcome, reply: onReply, user: onUser, ack: onAck, history: onHistory,
  auth: onAuth, error: onError, pong: () => {},
};

function onFrame(data) {
  clearTimeout(state.pongTimer);  // any frame proves the connection is alive
  let frame;
  try { frame = JSON.parse(data); } catch { return; }
  const handle = frame && handlers[frame.type];
  // Unknown types are ignored so the server can add new ones.
  if (handle) keepingFocus(() => handle(frame));
}

function onWelcome(frame) {
  clearTimeout(state.connectTimer);
  // The token this hello sent no longer worked, and another tab stored a newer one meanwhile (a
  // login or logout rotates it): saving this new session's token would cut that tab's session
  // off. Hello again with the stored one; it is then the token sent, so this cannot loop.
  const stored = load(KEYS.resume);
  if (!frame.resumed && stored && stored !== state.sentToken) {
    dropSocket();
    connect();
    return;
  }
  if (typeof frame.resume === 'string') save(KEYS.resume, frame.resume);
  if (!frame.resumed) state.needHistory = false;  // a new session has no past to send
  const otherConversation = isNewConversation(frame);
  // Only a session that resumed resends what followed the hello's last_seq; where a user leaving
  // started the conversation anew (`since`), the entries before were deleted on purpose.
  const resends = frame.resumed && !otherConversation && state.resendFrom !== null
    && frame.last_seq >= state.resendFrom;
  state.resendFrom = resends ? Math.max(state.resendFrom, isSeq(frame.since) ? frame.since : 0) : null;
  if (otherConversation) {
    if (userLeft(frame.user)) endConversation();
    else clearConversation();
    addNote(t('expired'));
    // The hello asked for what followed a seq of the conversation that is over.
    if (frame.resumed && !state.askedHistory) askHistory(frame.last_seq);
  } else if (userLeft(frame.user)) {
    endConversation(frame.since);  // another tab logged out while this one was away (see onAuth)
  } else if (frame.resumed && Number.isInteger(frame.last_seq) && frame.last_seq < state.lastSeq) {
    forgetSeqsAbove(frame.last_seq);
  }
  if (frame.resumed && isSeq(frame.since)) forgetSeqsBelow(frame.since);
  if (typeof frame.session === 'string') state.session = frame.session;
  state.user = typeof frame.user === 'string' ? frame.user : null;
  state.connected = true;
  state.failures = 0;
  startKeepalive();
  followSessionLanguage(frame.lang);
  // A new connection has a rate limit of its own: what waited for the old one goes now.
  clearTimeout(state.holdTimer);
  state.holdTimer = null;
  state.secretWaits = false;  // typed for the connection that is gone: sent again only when asked
  sendOutbox();
  refreshControls();
}

function sendOutbox() {
  for (const queued of outboxRead()) send(queued);
}

// The server dropped a frame for coming too fast. Later ones sent meanwhile could overtake it, so
// everything waits in the outbox and then goes again, in order: a frame the server has processed
// already is only acknowledged again. Refused again, it waits again.
function holdOutbox() {
  if (state.holdTimer !== null) return;
  state.holdTimer = setTimeout(() => {
    state.holdTimer = null;
    if (!state.connected) return;
    sendOutbox();
    if (state.secretWaits && state.inputMode === 'password' && ui.input.value) sendSecret();
  }, RATE_LIMIT_RETRY_MS);
}

// A frame from the outbox goes at once unless the connection is down or the outbox is held.
function sendQueued(frame) {
  outboxAdd(frame);
  if (state.connected && state.holdTimer === null) send(frame);
}

// The display shows another conversation than the one this welcome is for: the token sent was
// expired, or it opened another session than the one on display. After an expiry another tab may
// have started a new session and stored its token, which this tab then resumes (`resumed: true`);
// a page that lost its token (site data cleared meanwhile) sends none and gets a new session.
// Either way the seq numbers on display mean nothing in the new conversation.
function isNewConversation(frame) {
  if (state.sentToken && !frame.resumed) return true;
  const session = typeof frame.session === 'string' ? frame.session : null;
  return state.session !== null && session !== null && session !== state.session;
}

function askHistory(lastSeq) {
  const before = (Number.isInteger(lastSeq) ? lastSeq : 0) + 1;
  state.needHistory = true;  // until the answer comes: a reconnect meanwhile asks its hello for it
  send({ type: 'history', before_seq: before, limit: HISTORY_ON_LOAD });
}

// The session's replies come in its language, which the interface follows. A language picked in
// this tab after the hello left is newer than the session's, so it is sent instead of followed.
function followSessionLanguage(lang) {
  if (lang === state.lang) {
    state.langUnsent = false;
    return;
  }
  if (state.langUnsent) sendLanguage();
  else followLanguage(lang);
}

function followLanguage(lang) {
  if (!(lang in STRINGS) || lang === state.lang) return;
  state.lang = lang;
  applyLanguage();
}

function sendLanguage() {
  state.langUnsent = false;
  send({ type: 'action', id: newId(), name: `lang:${state.lang}` });
}

// The first entry resent after a welcome: if it is not the one expected, those between are gone
// (the server keeps a limited history), and "Show earlier messages" could not fetch them either.
function checkResent(seq) {
  if (state.resendFrom !== null && seq > state.resendFrom) addNote(t('missed'));
  state.resendFrom = null;
}

function onReply(frame) {
  if (!isSeq(frame.seq)) return;
  checkResent(frame.seq);
  // The message that caused this reply sits just before it, even before its ack says where.
  const cause = byId.get(frame.in_reply_to);
  if (cause && sortKeys.get(cause) === Infinity) place(cause, frame.seq - 0.5);
  if (cause?.classList.contains('failed')) markDelivered(cause);  // it got through after all
  showEntry({ ...frame, from: 'bot' });
  refreshControls();
}

function onUser(frame) {
  if (!isSeq(frame.seq)) return;
  checkResent(frame.seq);
  showEntry({ ...frame, from: 'user' });
}

function onAck(frame) {
  if (typeof frame.id !== 'string') return;
  outboxRemove(frame.id);
  accountActionDone(frame.id);
  const bubble = byId.get(frame.id);
  if (!bubble) return;
  markDelivered(bubble);
  const placed = Number.isInteger(sortKeys.get(bubble));  // an echo or history gave its seq
  if (!placed && isSeq(frame.seq) && !bySeq.has(frame.seq)) {
    bySeq.set(frame.seq, bubble);
    place(bubble, frame.seq);
  }
}

function onHistory(frame) {
  const entries = Array.isArray(frame.entries) ? frame.entries : [];
  const scrollBack = state.loadingEarlier;
  const fromBottom = ui.log.scrollHeight - ui.log.scrollTop;
  const focused = document.activeElement === ui.earlier;  // asked before hiding may move it
  state.needHistory = false;
  state.loadingEarlier = false;
  for (const entry of entries) if (isSeq(entry?.seq)) showEntry(entry);
  ui.earlier.hidden = !frame.more;
  setUnusable(ui.earlier, false);
  // Older entries go in above: keep the part the reader is looking at still.
  if (scrollBack) ui.log.scrollTop = ui.log.scrollHeight - fromBottom;
  else scrollToBottom();
  if (ui.earlier.hidden && focused) ui.log.focus();  // nothing earlier: go on reading from there
  refreshControls();
}

function onAuth(frame) {
  if (typeof frame.resume === 'string') save(KEYS.resume, frame.resume);
  const user = typeof frame.user === 'string' ? frame.user : null;
  if (userLeft(user)) endConversation(frame.since);
  state.user = user;
  refreshControls();
}

function errorText(frame) {
  const known = STRINGS[state.lang].errors;
  if (Object.prototype.hasOwnProperty.call(known, frame.code)) return known[frame.code];
  return asText(frame.message) || asText(frame.code);
}

function onError(frame) {
  const id = frame.in_reply_to;
  const message = errorText(frame);
  if (frame.code === 'rate_limited') holdOutbox();
  if (typeof id === 'string' && outboxRead().some((queued) => queued.id === id)) {
    if (frame.code === 'rate_limited') return;  // it stays "sending…" and goes again
    outboxRemove(id);
  }
  accountActionDone(id);
  const bubble = byId.get(id);
  if (bubble) markNotSent(bubble, message);
  else addNote(message, 'error');
  // A quick reply that failed must not leave its buttons locked.
  for (const chosen of ui.log.querySelectorAll('.msg-bot.chosen')) {
    if (chosen.dataset.actionId !== id) continue;
    chosen.classList.remove('chosen');
    chosen.querySelector('[aria-pressed="true"]')?.removeAttribute('aria-pressed');
  }
  refreshControls();
}

// ---------- rendering ----------

function showEntry(entry) {
  if (bySeq.has(entry.seq)) return;  // already shown: resent reply, echo or overlapping history
  const mine = entry.from === 'user' ? byId.get(entry.id) : undefined;
  if (mine?.classList.contains('failed')) markDelivered(mine);  // the server has it after all
  const el = mine || makeBubble(entry);
  bySeq.set(entry.seq, el);
  if (typeof entry.id === 'string' && entry.from === 'user') byId.set(entry.id, el);
  if (entry.from === 'bot' && isSeq(entry.seq) && entry.seq > state.lastSeq) {
    state.lastSeq = entry.seq;
    save(KEYS.lastSeq, entry.seq);
  }
  const follow = nearBottom();
  place(el, entry.seq);
  if (follow) scrollToBottom();
}

function makeBubble(entry) {
  const bot = entry.from !== 'user';
  const el = document.createElement('div');
  el.className = `msg ${bot ? 'msg-bot' : 'msg-user'}`;
  el.dir = 'auto';  // the direction follows the message text, not the page
  el.dataset.from = bot ? 'bot' : 'user';
  el.dataset.testid = 'message';
  const who = document.createElement('span');
  who.className = 'who sr-only';
  who.dir = document.documentElement.dir || 'ltr';  // excluded from the dir=auto guess
  who.dataset.who = bot ? 'bot' : 'you';
  who.textContent = `${t(who.dataset.who)}: `;
  const body = document.createElement('p');
  body.className = 'msg-text';
  body.dir = 'auto';
  body.dataset.testid = 'message-text';
  body.textContent = entry.secret ? SECRET_MASK : asText(entry.text);  // never innerHTML
  el.append(who, body);
  if (bot) {
    el.dataset.input = entry.input === 'password' ? 'password' : 'text';
    const buttons = Array.isArray(entry.buttons) ? entry.buttons : [];
    if (buttons.length) el.append(makeQuickReplies(el, buttons));
  }
  return el;
}

function makeQuickReplies(bubble, buttons) {
  const group = document.createElement('div');
  group.className = 'quick-replies';
  for (const { label, action } of buttons) {
    if (typeof action !== 'string') continue;
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'quick-reply';
    button.dataset.testid = 'quick-reply';
    button.textContent = asText(label) || action;
    button.addEventListener('click', () => {
      bubble.classList.add('chosen');  // one choice per reply: no double submissions
      button.setAttribute('aria-pressed', 'true');
      bubble.dataset.actionId = sendAction(action) || '';
      ui.input.focus();
    });
    group.append(button);
  }
  return group;
}

function showOwnMessage(id, text, secret) {
  const el = makeBubble({ from: 'user', text, secret });
  el.classList.add('pending');
  el.dataset.id = id;
  const status = document.createElement('span');
  status.className = 'msg-status';
  status.dataset.testid = 'message-status';
  status.dataset.status = 'sending';
  status.textContent = t('sending');
  el.append(status);
  byId.set(id, el);
  place(el, Infinity);
  scrollToBottom();
}

function markNotSent(bubble, reason) {
  if (!bubble.classList.contains('pending')) return;
  bubble.classList.replace('pending', 'failed');
  const status = bubble.querySelector('.msg-status');
  if (status) {
    status.dataset.status = 'not-sent';
    status.textContent = reason ? `${t('notSent')}: ${reason}` : t('notSent');
  }
  if (sortKeys.get(bubble) === Infinity) place(bubble, lastEntryKey() + 0.5);  // pin it
}

function markDelivered(bubble) {
  bubble.classList.remove('pending', 'failed');
  bubble.querySelector('.msg-status')?.remove();
}

// A password is never queued, so one whose ack did not arrive is lost with the connection.
function failUnqueuedMessages() {
  const queued = new Set(outboxRead().map((frame) => frame.id));
  for (const [id, bubble] of byId) {
    if (bubble.classList.contains('pending') && !queued.has(id)) markNotSent(bubble, '');
  }
}

function addNote(text, kind = 'info') {
  // The same note again in a row (a refusal met at each reconnect) says nothing new, even with
  // a message still being sent after it.
  let last = ui.log.lastElementChild;
  while (last && sortKeys.get(last) === Infinity) last = last.previousElementSibling;
  if (last?.classList.contains('note') && last.textContent === text) return;
  const note = document.createElement('p');
  note.className = `note note-${kind}`;
  note.dir = 'auto';
  note.dataset.testid = 'system-note';
  note.textContent = text;
  place(note, lastEntryKey() + 0.5);
  scrollToBottom();
}

function place(el, key) {
  sortKeys.set(el, key);
  let before = ui.log.lastElementChild;
  while (before && (before === el || sortKeys.get(before) > key)) before = before.previousElementSibling;
  const next = before ? before.nextElementSibling : ui.log.firstElementChild;
  if (next === el) return;  // already in place: moving it would replay its entry animation
  ui.log.insertBefore(el, next);
}

// The seq of the last entry shown. Notes and pinned bubbles go just after it (seq + 0.5), in the
// order they come: were they placed after each other instead, a few of them would climb past
// the seqs of the entries still to come, and sit among them.
function lastEntryKey() {
  for (let el = ui.log.lastElementChild; el; el = el.previousElementSibling) {
    const key = sortKeys.get(el);
    if (Number.isInteger(key)) return key;
  }
  return 0;
}

// A user leaving (a logout, or another user logging in) ends the conversation: the next person
// at this screen must not read it. The server forgot it too; the replies that follow (the
// goodbye) start the new one.
function userLeft(user) {
  return state.user !== null && (typeof user === 'string' ? user : null) !== state.user;
}

// What the user who left had typed and this connection has not sent goes too: sent later, it
// would land in the next person's conversation. A frame already sent on this connection is the
// server's to answer, in the new conversation: its bubble stays, as the others will show it.
// Text still in the field is theirs as well: the next person could read it or send it.
// `since` (from the server) is where the new conversation starts: what came from there on stays.
function endConversation(since) {
  ui.input.value = '';
  const sent = new Set(state.sentSizes.map(([id]) => id));
  for (const frame of outboxRead()) {
    if (sent.has(frame.id)) continue;
    outboxRemove(frame.id);
    byId.get(frame.id)?.remove();
  }
  state.accountAction = null;  // its ack may have been lost with them: the header must work again
  // A catch-up between servers may bring the replies that start the new conversation first.
  clearConversation(isSeq(since) ? since : Infinity);
}

// Everything shown goes but what is still owed to the server, and the entries from `keepFrom` on.
function clearConversation(keepFrom = Infinity) {
  for (const el of [...ui.log.children]) {
    const seq = sortKeys.get(el);
    if (el.classList.contains('pending')) place(el, Infinity);
    else if (!(Number.isInteger(seq) && seq >= keepFrom)) el.remove();
  }
  for (const [seq, el] of bySeq) if (!el.isConnected) bySeq.delete(seq);
  for (const [id, el] of byId) if (!el.isConnected) byId.delete(id);
  if (keepFrom === Infinity) {
    state.lastSeq = 0;
    save(KEYS.lastSeq, 0);
  }
  ui.earlier.hidden = true;
}

// A user leaving ended the conversation at `since` (the server forgot what came before), maybe
// while this tab was away and the same user came back: what it still shows from before goes too.
function forgetSeqsBelow(since) {
  let forgot = false;
  for (const [seq, el] of bySeq) {
    if (seq >= since) continue;
    el.remove();
    bySeq.delete(seq);
    forgot = true;
  }
  if (!forgot) return;
  for (const [id, el] of byId) if (!el.isConnected) byId.delete(id);
  ui.earlier.hidden = true;  // nothing before `since` is left to load
}

// After a crash the server may have lost its newest entries and will number new ones again
// from its last_seq: forget those numbers so the new entries are not taken for duplicates.
function forgetSeqsAbove(seq) {
  for (const [known] of bySeq) if (known > seq) bySeq.delete(known);
  state.lastSeq = seq;
  save(KEYS.lastSeq, seq);
}

function nearBottom() {
  return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < STICK_TO_BOTTOM_PX;
}

function scrollToBottom() {
  ui.log.scrollTop = ui.log.scrollHeight;
}

// Where an element of the log is, from the top of its visible part.
function offsetInLog(el) {
  return el.getBoundingClientRect().top - ui.log.getBoundingClientRect().top;
}

// The top-most entry in view, and where; the log's own scroll anchoring is off (see chat.css).
function topInView() {
  for (const el of ui.log.children) {
    const offset = offsetInLog(el);
    if (offset + el.offsetHeight > 0) return { el, offset };
  }
  return null;
}

// ---------- controls ----------

function refreshControls() {
  const bots = ui.log.querySelectorAll('.msg-bot');
  const latest = bots[bots.length - 1];
  for (const bubble of bots) {
    const usable = bubble === latest && state.connected && !bubble.classList.contains('chosen');
    for (const button of bubble.querySelectorAll('.quick-reply')) button.disabled = !usable;
  }
  setInputMode(latest?.dataset.input === 'password' ? 'password' : 'text');
  const anonymous = state.user === null;
  ui.login.hidden = ui.register.hidden = !anonymous;
  ui.logout.hidden = anonymous;
  const unusable = !state.connected || state.accountAction !== null;
  for (const button of [ui.login, ui.register, ui.logout]) setUnusable(button, unusable);
  ui.userBox.hidden = anonymous;
  ui.userName.textContent = state.user || '';
  showStatus();
}

// `aria-disabled` rather than `disabled`: Chromium takes the focus away from a disabled button,
// and a keyboard user would have to find the way back from the top of the page. The click
// handlers ignore a button marked so.
function setUnusable(button, unusable) {
  if (unusable) button.setAttribute('aria-disabled', 'true');
  else button.removeAttribute('aria-disabled');
}

const isUnusable = (button) => button.getAttribute('aria-disabled') === 'true';

// Chromium sends the focus of a control that is hidden, disabled or removed to <body>. The
// message field takes it instead, unless `change` moved it somewhere on purpose.
function keepingFocus(change) {
  const focused = document.activeElement;
  change();
  if (!focused || focused === document.body || focused === ui.input) return;
  const now = document.activeElement;
  if (now !== focused && now !== document.body && now !== null) return;
  if (!focused.isConnected || focused.disabled || !isShown(focused)) ui.input.focus();
}

function isShown(element) {
  // checkVisibility is recent (Safari 17.4): an element with no boxes is not shown either.
  if (typeof element.checkVisibility === 'function') return element.checkVisibility();
  return element.getClientRects().length > 0;
}

function setInputMode(mode) {
  if (mode !== state.inputMode) {
    // Text typed for one mode must never be sent in the other (a password in clear).
    ui.input.value = '';
    state.inputMode = mode;
  }
  const secret = mode === 'password';
  ui.input.type = secret ? 'password' : 'text';
  ui.input.dataset.mode = mode;
  ui.input.spellcheck = !secret;
  ui.input.placeholder = t(secret ? 'passwordPlaceholder' : 'placeholder');
  const blocked = secret && !state.connected;
  ui.send.disabled = blocked;
  ui.hint.hidden = !secret;
  ui.hint.textContent = secret ? t(blocked ? 'passwordOffline' : 'passwordHint') : '';
}

function showStatus() {
  let name = 'connected';
  // Without a network the connection is as good as lost, even before its silence shows it.
  if (!navigator.onLine) name = 'offline';
  else if (!state.connected) name = state.failures >= OFFLINE_AFTER_FAILURES ? 'offline' : 'reconnecting';
  // Rewriting an unchanged live region makes some screen readers announce it again.
  if (ui.status.textContent === t(name)) return;
  ui.status.dataset.state = name;
  ui.status.textContent = t(name);
}

function applyLanguage() {
  document.documentElement.lang = state.lang;
  document.title = t('title');
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-label]')) {
    el.setAttribute('aria-label', t(el.dataset.i18nLabel));
  }
  for (const el of ui.log.querySelectorAll('.who')) el.textContent = `${t(el.dataset.who)}: `;
  for (const el of ui.log.querySelectorAll('.msg-status[data-status="sending"]')) {
    el.textContent = t('sending');
  }
  for (const button of ui.langButtons) {
    button.setAttribute('aria-pressed', String(button.dataset.lang === state.lang));
  }
  refreshControls();
}

// ---------- user actions ----------

function onSubmit(event) {
  event.preventDefault();
  if (!ui.input.value.trim()) return;
  if (state.inputMode === 'password') sendSecret();
  else sendText();
  ui.input.focus();
}

function sendText() {
  const frame = { type: 'message', id: newId(), text: ui.input.value };
  ui.input.value = '';
  showOwnMessage(frame.id, frame.text, false);
  sendQueued(frame);  // or after the next welcome, or when a rate limit's wait is over
}

// The password goes from the field straight into one frame and is kept nowhere else.
function sendSecret() {
  if (!state.connected) return;
  // Sent now, it would overtake the messages waiting after a rate_limited refusal (the username it
  // follows, say): it stays in its field, and goes when they do.
  if (state.holdTimer !== null) {
    state.secretWaits = true;
    return;
  }
  state.secretWaits = false;
  const id = newId();
  // `secret`: should another tab's turn have moved on meanwhile, the server drops the text
  // rather than read a password as an ordinary message.
  send({ type: 'message', id, text: ui.input.value, secret: true });
  ui.input.value = '';
  showOwnMessage(id, '', true);
}

function sendAction(name) {
  if (!state.connected) return null;
  const frame = { type: 'action', id: newId(), name };
  sendQueued(frame);
  refreshControls();
  return frame.id;
}

// Log in, Register and Log out act once per click: a double click would have the bot ask for
// the username twice, or log out twice. Like a quick reply, the header waits for the ack.
function sendAccountAction(button, name) {
  if (isUnusable(button) || state.accountAction !== null) return;
  state.accountAction = sendAction(name);
  refreshControls();
}

function accountActionDone(id) {
  if (state.accountAction === null || id !== state.accountAction) return;
  state.accountAction = null;
  refreshControls();
}

function switchLanguage(lang) {
  if (!(lang in STRINGS) || lang === state.lang) return;
  state.lang = lang;
  save(KEYS.lang, lang);  // the other tabs follow (onStorage), and so do their next hellos
  applyLanguage();
  // A live session switches in place; otherwise the next hello (or welcome) carries the language.
  if (state.connected) sendLanguage();
  else state.langUnsent = true;
}

// Another tab picked a language: it has told the session, and this tab's interface follows.
// Its own pick, if it had one still unsent, is older: the other tab's is the one to keep.
function onStorage(event) {
  if (event.key !== KEYS.lang || !(event.newValue in STRINGS)) return;
  state.langUnsent = false;
  followLanguage(event.newValue);
}

function loadEarlier() {
  const first = [...bySeq.keys()].reduce((a, b) => Math.min(a, b), Infinity);
  if (state.loadingEarlier || !state.connected || !Number.isFinite(first)) return;
  state.loadingEarlier = true;
  setUnusable(ui.earlier, true);  // one page at a time; the button keeps the focus meanwhile
  send({ type: 'history', before_seq: first, limit: HISTORY_PAGE });
}

// ---------- start ----------

function showQueuedMessages() {
  // Messages typed before a reload are still owed to the server: show them as sending.
  for (const frame of outboxRead()) {
    if (frame.type === 'message' && typeof frame.text === 'string') {
      showOwnMessage(frame.id, frame.text, false);
    }
  }
}

function start() {
  ui.form.addEventListener('submit', onSubmit);
  ui.login.addEventListener('click', () => sendAccountAction(ui.login, 'login'));
  ui.register.addEventListener('click', () => sendAccountAction(ui.register, 'register'));
  ui.logout.addEventListener('click', () => sendAccountAction(ui.logout, 'logout'));
  ui.earlier.addEventListener('click', loadEarlier);
  // Enter held down on a button repeats its click as often as the key repeats: a held key is one
  // press (a second Log in would have the bot ask for the username again).
  document.addEventListener('keydown', (event) => {
    if (event.repeat && event.key === 'Enter' && event.target instanceof HTMLButtonElement) event.preventDefault();
  }, true);
  // The conversation shrinks when the header or the hint grows (a long username wraps, the
  // password hint appears) and changes size with the window (a phone turned): a reader who was
  // at the newest message stays there, one who had scrolled up keeps the message read in view.
  let followed = true;
  let reading = null;
  ui.log.addEventListener('scroll', () => {
    followed = nearBottom();
    reading = followed ? null : topInView();
  });
  if (typeof ResizeObserver === 'function') {
    new ResizeObserver(() => {
      if (followed) scrollToBottom();
      else if (reading?.el.isConnected) ui.log.scrollTop += offsetInLog(reading.el) - reading.offset;
    }).observe(ui.log);
  }
  for (const button of ui.langButtons) {
    button.addEventListener('click', () => switchLanguage(button.dataset.lang));
  }
  window.addEventListener('storage', onStorage);
  window.addEventListener('online', networkChanged);
  window.addEventListener('offline', networkChanged);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') reconnectNow();
  });
  // Closing on pagehide lets the browser keep the page in its back/forward cache.
  window.addEventListener('pagehide', () => {
    state.leaving = true;
    if (state.ws) disconnected();
  });
  window.addEventListener('pageshow', (event) => {
    if (!event.persisted) return;
    state.leaving = false;
    reconnectNow();
  });
  applyLanguage();
  adoptSharedOutbox();
  showQueuedMessages();
  connect();
}

// Pages of an earlier version kept the outbox in localStorage, shared by the tabs: the first
// tab to start takes what is left there, so nothing typed then is stranded.
function adoptSharedOutbox() {
  const shared = load(KEYS.outbox);
  if (!shared) return;
  save(KEYS.outbox, null);
  try {
    const frames = JSON.parse(shared);
    if (Array.isArray(frames)) for (const frame of frames) if (frame && typeof frame.id === 'string') outboxAdd(frame);
  } catch { /* unreadable: nothing to adopt */ }
}

start();
