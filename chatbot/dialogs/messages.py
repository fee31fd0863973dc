"""What the engine itself says, in every language it ships with."""

from __future__ import annotations

#: The text for a language the engine has none in, where the English one would not do.
ANY_LANGUAGE = "*"

ENGINE_MESSAGES: dict[str, dict[str, str]] = {
    "fallback": {
        "en": "Sorry, I did not understand that. Type /help to see what I can do.",
        "ru": "Извините, я не понял. Наберите /help, чтобы узнать, что я умею.",
    },
    "help": {
        "en": "Commands that work everywhere: /help, /login, /register, /logout, /lang en|ru, /start.",
        "ru": "Команды, которые работают всегда: /help, /login, /register, /logout, /lang en|ru, /start.",
    },
    "unknown_command": {
        "en": "I do not know the command {command}. Type /help for the list.",
        "ru": "Я не знаю команды {command}. Наберите /help, чтобы увидеть список.",
    },
    "unknown_action": {
        "en": "That button is no longer active.",
        "ru": "Эта кнопка больше не действует.",
    },
    "unknown_language": {
        "en": "I speak these languages: {languages}.",
        "ru": "Я говорю на этих языках: {languages}.",
    },
    "language_set": {
        "en": "I will speak English.",
        "ru": "Буду говорить по-русски.",
        ANY_LANGUAGE: "Language: {lang}.",  # 'I will speak English.' would be wrong for the rest
    },
    "already_logged_in": {
        "en": "You are already logged in as {user}. Log out first to switch accounts.",
        "ru": "Вы уже вошли как {user}. Чтобы сменить учётную запись, сначала выйдите.",
    },
    "login_required": {
        "en": "Please log in first: type /login or /register.",
        "ru": "Сначала войдите: наберите /login или /register.",
    },
    "entries": {
        "en": "You can also start: {entries}.",
        "ru": "Ещё можно начать: {entries}.",
    },
    "not_logged_in": {
        "en": "You are not logged in.",
        "ru": "Вы не вошли в систему.",
    },
    "logged_out": {
        "en": "You are logged out. See you soon!",
        "ru": "Вы вышли. До встречи!",
    },
    "flow_changed": {
        "en": "This conversation was updated in the meantime, so let us continue from here.",
        "ru": "Пока вас не было, диалог обновился, поэтому продолжим отсюда.",
    },
    "ok": {
        "en": "OK.",
        "ru": "Хорошо.",
    },
}
