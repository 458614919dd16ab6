/// The page templates (Mustache, swift-mustache 2). Each page template is given the API's own
/// answer for its query (a `ContactPage`, a `ContactDTO`, the JSON object of an administrative
/// route) plus `t` (the strings table), `csrf` and the page's own few extras. `{{x}}` escapes
/// HTML; `{{{x}}}` is used only for markup this module makes itself (the layout's body, the QR SVG).
enum WebTemplates {
    static let all: [String: String] = [
        "layout": layout, "login": login, "contacts": contacts, "contact-list": contactList, "contact": contact,
        "contact-form": contactForm, "forget": forget, "status": status, "share": share, "chapter": chapter,
        "chapter-map": chapterMap, "party": party, "import": importPage, "import-preview": importPreview,
        "import-job": importJob, "error": error,
    ]

    static let layout = """
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>{{title}} · {{t.app}}</title>
    <link rel="stylesheet" href="/assets/kith.css">
    {{#csrf}}<meta name="kith-csrf" content="{{csrf}}">{{/csrf}}
    </head>
    <body>
    <a class="skip" href="#main">{{t.skip}}</a>
    {{#csrf}}
    <header>
    <nav aria-label="{{t.nav}}">
    <a href="/contacts"{{#nav.contacts}} aria-current="page"{{/nav.contacts}}>{{t.nav_contacts}}</a>
    <a href="/share"{{#nav.share}} aria-current="page"{{/nav.share}}>{{t.nav_share}}</a>
    <a href="/chapter"{{#nav.chapter}} aria-current="page"{{/nav.chapter}}>{{t.nav_chapter}}</a>
    <a href="/party"{{#nav.party}} aria-current="page"{{/nav.party}}>{{t.nav_party}}</a>
    <a href="/import"{{#nav.import}} aria-current="page"{{/nav.import}}>{{t.nav_import}}</a>
    <a href="/status"{{#nav.status}} aria-current="page"{{/nav.status}}>{{t.nav_status}}</a>
    <form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button class="link">{{t.logout}}</button></form>
    </nav>
    </header>
    {{/csrf}}
    <main id="main"{{#live}} data-live="1"{{/live}}>
    {{{body}}}
    </main>
    <p id="live-note" class="live-note" role="status" aria-live="polite" data-text="{{t.live_updated}}"></p>
    <script src="/assets/kith.js" defer></script>
    </body>
    </html>
    """

    static let login = """
    <h1>{{t.login_title}}</h1>
    <p>{{t.login_intro}}</p>
    {{#message}}<p class="error" role="alert">{{message}}</p>{{/message}}
    <form method="post" action="/login" class="stack">
    <label for="password">{{t.login_password}}</label>
    <input id="password" name="password" type="password" autocomplete="current-password" required autofocus>
    <button type="submit">{{t.login_submit}}</button>
    </form>
    """

    static let contacts = """
    <h1>{{t.contacts_title}}</h1>
    <form method="get" action="/contacts" role="search" class="search">
    <label for="q">{{t.contacts_search}}</label>
    <input id="q" name="q" type="search" value="{{q}}" placeholder="{{t.contacts_search_hint}}" autocomplete="off" data-live-search="/contacts">
    <button type="submit">{{t.contacts_search_submit}}</button>
    </form>
    <p><a class="button" href="/contacts/new">{{t.contacts_add}}</a></p>
    <div id="results" aria-live="polite">
    {{> contact-list}}
    </div>
    """

    static let contactList = """
    {{#page}}
    <p class="muted"><span id="total">{{total}}</span> {{t.contacts_total}}</p>
    <ul class="cards" id="contact-list">
    {{#contacts}}
    <li><a href="/contacts/{{id}}">{{name}}</a>
    {{#first(phones)}}<span class="muted">{{raw}}</span>{{/first(phones)}}
    {{#tags}}<span class="tag">#{{.}}</span> {{/tags}}</li>
    {{/contacts}}
    </ul>
    {{^contacts}}<p>{{t.contacts_none}}</p>{{/contacts}}
    <p>{{#cursor}}<a href="/contacts?q={{qEncoded}}">{{t.contacts_first}}</a> {{/cursor}}{{#next}}<a rel="next" href="/contacts?q={{qEncoded}}&amp;cursor={{next}}">{{t.contacts_next}}</a>{{/next}}</p>
    {{/page}}
    """

    static let contact = """
    {{#contact}}
    <h1 id="contact-name" data-contact="{{id}}">{{name}}</h1>
    <p class="muted">{{t.contact_id}}: <code>{{id}}</code></p>
    <p class="row"><a class="button" href="/contacts/{{id}}/edit">{{t.contact_edit}}</a>
    <a href="/share?contact={{id}}">{{t.contact_share}}</a> <a href="/party?contact={{id}}">{{t.contact_party}}</a></p>
    <dl class="fields" id="fields">
    {{#givenName}}<dt>{{t.contact_givenName}}</dt><dd>{{.}}</dd>{{/givenName}}
    {{#familyName}}<dt>{{t.contact_familyName}}</dt><dd>{{.}}</dd>{{/familyName}}
    {{#displayName}}<dt>{{t.contact_displayName}}</dt><dd>{{.}}</dd>{{/displayName}}
    <dt>{{t.contact_phones}}</dt><dd>{{#phones}}<a href="tel:{{number}}">{{raw}}</a><br>{{/phones}}{{^phones}}–{{/phones}}</dd>
    <dt>{{t.contact_emails}}</dt><dd>{{#emails}}<a href="mailto:{{address}}">{{raw}}</a><br>{{/emails}}{{^emails}}–{{/emails}}</dd>
    {{#address}}<dt>{{t.contact_address}}</dt><dd>{{.}}</dd>{{/address}}
    {{#city}}<dt>{{t.contact_city}}</dt><dd>{{.}}</dd>{{/city}}
    {{#postalCode}}<dt>{{t.contact_postalCode}}</dt><dd>{{.}}</dd>{{/postalCode}}
    {{#support}}<dt>{{t.contact_support}}</dt><dd>{{.}}</dd>{{/support}}
    {{#relationship}}<dt>{{t.contact_relationship}}</dt><dd>{{.}}</dd>{{/relationship}}
    {{#voterFileId}}<dt>{{t.contact_voterFileId}}</dt><dd>{{.}}</dd>{{/voterFileId}}
    <dt>{{t.contact_consent}}</dt><dd id="consent">{{consentText}}{{#consent}} ({{date}}{{^empty(method)}}, {{method}}{{/empty(method)}}){{/consent}}</dd>
    {{#notes}}<dt>{{t.contact_notes}}</dt><dd class="pre">{{.}}</dd>{{/notes}}
    </dl>

    <section aria-labelledby="tags-h">
    <h2 id="tags-h">{{t.contact_tags}}</h2>
    <ul class="tags">
    {{#tags}}<li><span class="tag">#{{.}}</span>
    <form method="post" action="/contacts/{{id}}/untag" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="tag" value="{{.}}"><button class="small" aria-label="{{t.contact_untag}} {{.}}">×</button></form></li>{{/tags}}
    </ul>
    <form method="post" action="/contacts/{{id}}/tag" class="row">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <label for="tag">{{t.contact_tag}}</label><input id="tag" name="tag" required>
    <button type="submit">{{t.contact_tag}}</button>
    </form>
    </section>

    <section aria-labelledby="log-h">
    <h2 id="log-h">{{t.contact_log}}</h2>
    <form method="post" action="/contacts/{{id}}/log" class="log">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <fieldset><legend>{{t.contact_log_channel}}</legend>
    {{#channels}}<label class="chip"><input type="radio" name="channel" value="{{value}}"{{#checked}} checked{{/checked}}> {{label}}</label>{{/channels}}
    </fieldset>
    <fieldset><legend>{{t.contact_log_outcome}}</legend>
    {{#outcomes}}<button type="submit" name="outcome" value="{{value}}">{{label}}</button> {{/outcomes}}
    </fieldset>
    <label for="note">{{t.contact_log_note}}</label><input id="note" name="note">
    </form>
    <h3>{{t.contact_conversations}}</h3>
    <ul id="conversations">{{#conversations}}<li>{{date}} · {{channel}} · <strong>{{outcome}}</strong>{{^empty(note)}} — {{note}}{{/empty(note)}}</li>{{/conversations}}</ul>
    {{^conversations}}<p>{{t.contact_conversations_none}}</p>{{/conversations}}
    </section>

    <section aria-labelledby="knows-h">
    <h2 id="knows-h">{{t.contact_knows}}</h2>
    {{#knownBy}}<ul>{{#.}}<li>{{chapter}}: {{#members}}<span class="member">{{.}}</span> {{/members}}</li>{{/.}}</ul>{{/knownBy}}
    {{^knownBy}}<p>{{t.contact_knows_none}}</p>{{/knownBy}}
    </section>

    <section aria-labelledby="link-h">
    <h2 id="link-h">{{t.contact_link}}</h2>
    {{^empty(links)}}<p>{{t.contact_links}}: {{#links}}<a href="/contacts/{{.}}"><code>{{.}}</code></a> {{/links}}</p>{{/empty(links)}}
    <form method="post" action="/contacts/{{id}}/link" class="row">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <label for="other">{{t.contact_link_hint}}</label><input id="other" name="other" required minlength="4">
    <button type="submit">{{t.contact_link_submit}}</button>
    </form>
    </section>

    <section aria-labelledby="forget-h">
    <h2 id="forget-h">{{t.contact_forget}}</h2>
    <p><a class="button danger" href="/contacts/{{id}}/forget">{{t.contact_forget}}</a></p>
    </section>
    {{/contact}}
    """

    static let contactForm = """
    <h1>{{#contact}}{{t.contact_edit}}: {{name}}{{/contact}}{{^contact}}{{t.contact_new}}{{/contact}}</h1>
    {{#message}}<p class="error" role="alert">{{message}}</p>{{/message}}
    <form method="post" action="{{action}}" class="stack">
    <input type="hidden" name="csrf" value="{{csrf}}">
    {{#fields}}
    <label for="{{name}}">{{label}}</label>
    {{#multiline}}<textarea id="{{name}}" name="{{name}}" rows="3">{{value}}</textarea>{{/multiline}}
    {{^multiline}}<input id="{{name}}" name="{{name}}" value="{{value}}"{{#numeric}} inputmode="numeric" pattern="[1-5]?"{{/numeric}}>{{/multiline}}
    {{/fields}}
    {{#contact}}
    
    {{#phones}}<label class="chip"><input type="checkbox" name="removePhone" value="{{number}}"> {{t.contact_remove}}: {{raw}}</label>{{/phones}}
    {{#emails}}<label class="chip"><input type="checkbox" name="removeEmail" value="{{address}}"> {{t.contact_remove}}: {{raw}}</label>{{/emails}}
    {{/contact}}
    <label for="consentLevel">{{t.contact_consent}}</label>
    <select id="consentLevel" name="consentLevel">{{#consentLevels}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{label}}</option>{{/consentLevels}}</select>
    <label for="consentMethod">{{t.contact_consent_method}}</label><input id="consentMethod" name="consentMethod" value="{{consentMethod}}">
    <label for="addPhone">{{t.contact_phone_add}}</label><input id="addPhone" name="addPhone" type="tel" autocomplete="off">
    <label for="addEmail">{{t.contact_email_add}}</label><input id="addEmail" name="addEmail" type="email" autocomplete="off">
    {{^contact}}<label for="tags">{{t.contact_tags_add}}</label><input id="tags" name="tags">{{/contact}}
    <div class="row"><button type="submit">{{t.contact_save}}</button> <a href="{{cancel}}">{{t.contact_cancel}}</a></div>
    </form>
    """

    static let forget = """
    {{#contact}}
    <h1>{{t.contact_forget}}: {{name}}</h1>
    <p class="warning" role="alert">{{t.contact_forget_warning}}</p>
    <form method="post" action="/contacts/{{id}}/forget" class="row">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <button type="submit" class="danger">{{t.contact_forget_confirm}}</button>
    <a href="/contacts/{{id}}">{{t.contact_cancel}}</a>
    </form>
    {{/contact}}
    """

    static let status = """
    <h1>{{t.status_title}}</h1>
    <p class="big" id="summary">{{summary}}</p>
    {{#pendingText}}<p>{{pendingText}}</p>{{/pendingText}}
    <h2>{{t.status_peers}}</h2>
    <ul id="peers">{{#peerList}}<li>{{#ownDevice}}{{t.status_own_device}}{{/ownDevice}}{{^ownDevice}}{{t.chapter_member}}{{/ownDevice}} {{#who}}<strong class="peer-name">{{who}}</strong>{{/who}}{{^who}}<code>{{memberShort}}</code>{{/who}} · {{t.status_peer_since}} {{connected}}{{#caughtUp}} · {{t.status_peer_caughtup}} {{caughtUp}}{{/caughtUp}}<br><span class="muted">{{name}}</span></li>{{/peerList}}</ul>
    <h2>{{t.status_identity}}</h2>
    <dl class="fields">
    <dt>{{t.status_member}}</dt><dd><code>{{status.member}}</code></dd>
    <dt>{{t.status_device}}</dt><dd><code>{{status.device}}</code></dd>
    <dt>{{t.status_devices}}</dt><dd>{{#ownDevices}}<code>{{device}}</code> ({{name}})<br>{{/ownDevices}}{{^ownDevices}}–{{/ownDevices}}</dd>
    <dt>{{t.status_contacts}}</dt><dd>{{status.contacts}}</dd>
    </dl>
    <h2>{{t.status_scopes}}</h2>
    <ul>{{#status.scopes}}<li>{{name}}: {{contacts}} {{t.contacts_total}} · {{changes}} {{t.status_changes}}{{#pending}} · {{.}} {{t.status_pending}}{{/pending}}</li>{{/status.scopes}}</ul>
    <h2>{{t.status_web}}</h2>
    <dl class="fields">
    <dt>{{t.status_web}}</dt><dd><code id="web-address">{{webAddress}}</code></dd>
    {{#status.gui}}{{#address}}<dt>{{t.status_web_open}}</dt><dd><code id="gui-address">{{address}}</code></dd>{{/address}}
    <dt>{{t.status_web_lan}}</dt><dd><code id="gui-listen">{{listen}}</code></dd>
    <dt>{{t.status_fingerprint}}</dt><dd><code id="fingerprint">{{fingerprint}}</code></dd>{{/status.gui}}
    </dl>
    {{^status.gui}}<p class="muted">{{t.status_web_local}}</p>{{/status.gui}}
    """

    static let share = """
    <h1>{{t.share_title}}</h1>
    <p>{{t.share_intro}}</p>
    {{#message}}<p class="error" role="alert">{{message}}</p>{{/message}}
    {{#result}}<div class="notice" role="status" id="share-result"><p>{{t.share_done}}</p><p><strong>{{fieldsText}}</strong> · {{count}} {{t.contacts_total}}</p></div>{{/result}}
    {{#retracted}}<p class="notice" role="status">{{t.share_retracted}}</p>{{/retracted}}
    {{^chapters}}<p>{{t.share_nochapter}}</p>{{/chapters}}
    {{^empty(chapters)}}
    <form method="post" action="/share" class="stack" id="share-form">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <fieldset><legend>{{t.share_who}}</legend>
    <label for="contacts">{{t.share_contacts}}</label><input id="contacts" name="contacts" value="{{contactsValue}}">
    <label for="share-tag">{{t.share_tag}}</label><input id="share-tag" name="tag" value="{{tagValue}}">
    </fieldset>
    <fieldset aria-describedby="share-statement"><legend>{{t.share_fields}}</legend>
    {{#fieldChoices}}<label class="chip"><input type="checkbox" name="fields" value="{{value}}"{{#checked}} checked{{/checked}}> {{label}}</label>{{/fieldChoices}}
    </fieldset>
    <p class="notice" id="share-statement" aria-live="polite" data-prefix="{{t.share_statement}}" data-rest="{{t.share_statement_rest}}">{{t.share_statement}} <strong>{{statement}}</strong>. {{t.share_statement_rest}}</p>
    <label for="chapter">{{t.share_chapter}}</label>
    <select id="chapter" name="chapter">{{#chapters}}<option value="{{id}}">{{name}}</option>{{/chapters}}</select>
    <div class="row"><button type="submit" name="action" value="share">{{t.share_submit}}</button>
    <button type="submit" name="action" value="unshare" class="secondary">{{t.share_unshare}}</button></div>
    <p class="muted">{{t.share_unshare_intro}}</p>
    </form>
    {{/empty(chapters)}}
    """

    static let chapter = """
    <h1>{{t.chapter_title}}</h1>
    {{#picker}}<nav class="chapters" aria-label="{{t.chapter_pick}}"><ul>{{#chapters}}<li><a href="{{href}}"{{#current}} aria-current="page"{{/current}}>{{name}}</a></li>{{/chapters}}</ul></nav>{{/picker}}
    {{#message}}<p class="error" role="alert">{{message}}</p>{{/message}}
    {{#notice}}<p class="notice" role="status">{{notice}}</p>{{/notice}}
    {{^chapter}}
    <p>{{t.chapter_none}}</p>
    {{/chapter}}
    {{#chapter}}
    <h2 id="chapter-name">{{name}}</h2>
    <p>{{t.chapter_role}}: {{roleText}} · {{contacts}} {{t.chapter_contacts}} · <a href="/chapter/map?c={{chapterId}}">{{t.chapter_map}}</a></p>
    <h2>{{t.chapter_members}}</h2>
    <table><thead><tr><th scope="col">{{t.chapter_member}}</th><th scope="col">{{t.chapter_devices}}</th><th scope="col"></th></tr></thead><tbody>
    {{#memberList}}<tr><td>{{#named}}{{label}}{{/named}}{{^named}}<code>{{short}}</code>{{/named}}{{#admin}} · {{t.chapter_admin}}{{/admin}}{{#you}} · <strong>{{t.chapter_you}}</strong>{{/you}}</td><td>{{devices}}</td>
    <td>{{#canRemove}}<form method="post" action="/chapter/members/{{member}}/remove" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="c" value="{{chapterId}}"><button class="small danger" aria-describedby="remove-warning">{{t.chapter_remove}}</button></form>{{/canRemove}}</td></tr>{{/memberList}}
    </tbody></table>
    {{#isAdmin}}
    <p class="muted" id="remove-warning">{{t.chapter_remove_warning}}</p>
    <h2>{{t.chapter_requests}}</h2>
    <ul>{{#requests}}<li><code>{{short}}</code> {{detail}}
    <form method="post" action="/chapter/requests/{{member}}/approve" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="c" value="{{chapterId}}"><button class="small">{{t.chapter_approve}}</button></form>
    <form method="post" action="/chapter/requests/{{member}}/deny" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="c" value="{{chapterId}}"><button class="small secondary">{{t.chapter_deny}}</button></form></li>{{/requests}}</ul>
    {{^requests}}<p>{{t.chapter_requests_none}}</p>{{/requests}}
    <h2>{{t.chapter_invite}}</h2>
    {{#invite}}<div class="notice" role="status"><p>{{t.chapter_invite_made}}</p><p><code id="invite-text" class="wrap">{{text}}</code></p>
    <figure class="qr"><div role="img" aria-label="{{t.chapter_invite_qr}}">{{{svg}}}</div></figure></div>{{/invite}}
    <form method="post" action="/chapter/invites" class="row"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="c" value="{{chapterId}}">
    <label for="uses">{{t.chapter_invite_uses}}</label><input id="uses" name="uses" value="1" inputmode="numeric" size="3">
    <label class="chip"><input type="checkbox" name="approve" value="1"> {{t.chapter_invite_approve}}</label>
    <button>{{t.chapter_invite_submit}}</button></form>
    {{/isAdmin}}
    <h2>{{t.chapter_leave}}</h2>
    <form method="post" action="/chapter/leave" class="row"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="c" value="{{chapterId}}">
    <span class="muted">{{t.chapter_leave_warning}}</span> <button class="danger">{{t.chapter_leave}}</button></form>
    {{/chapter}}
    {{#chapter}}<details class="another"><summary>{{t.chapter_another}}</summary>{{/chapter}}
    <form method="post" action="/chapter/create" class="row"><input type="hidden" name="csrf" value="{{csrf}}">
    <label for="name">{{t.chapter_name}}</label><input id="name" name="name" required><button>{{t.chapter_create}}</button></form>
    <form method="post" action="/chapter/join" class="stack"><input type="hidden" name="csrf" value="{{csrf}}">
    <label for="invite">{{t.chapter_invite_text}}</label><textarea id="invite" name="invite" rows="3" required></textarea><button>{{t.chapter_join}}</button></form>
    {{#chapter}}</details>{{/chapter}}
    """

    static let chapterMap = """
    <h1>{{t.chapter_map}}{{#map.chapter}}: {{name}}{{/map.chapter}}</h1>
    {{#picker}}<nav class="chapters" aria-label="{{t.chapter_pick}}"><ul>{{#chapters}}<li><a href="{{href}}"{{#current}} aria-current="page"{{/current}}>{{name}}</a></li>{{/chapters}}</ul></nav>{{/picker}}
    <form method="get" action="/chapter/map" role="search" class="search">
    <input type="hidden" name="c" value="{{chapterId}}">
    <label for="q">{{t.contacts_search}}</label>
    <input id="q" name="q" type="search" value="{{q}}" placeholder="{{t.contacts_search_hint}}" autocomplete="off">
    <button type="submit">{{t.contacts_search_submit}}</button>
    </form>
    {{#map}}
    <p class="muted">{{total}} {{t.contacts_total}}</p>
    <table id="map"><thead><tr><th scope="col">{{t.contact_title}}</th><th scope="col">{{t.contact_phones}}</th><th scope="col">{{t.contact_emails}}</th><th scope="col">{{t.contact_support}}</th><th scope="col">{{t.chapter_map_knows}}</th></tr></thead><tbody>
    {{#contacts}}<tr id="c-{{id}}"><td>{{name}}{{#tags}} <span class="tag">#{{.}}</span>{{/tags}}</td><td class="phones" data-label="{{t.contact_phones}}">{{#phones}}{{raw}}<br>{{/phones}}</td><td data-label="{{t.contact_emails}}">{{#emails}}{{raw}}<br>{{/emails}}</td><td data-label="{{t.contact_support}}">{{support}}</td><td data-label="{{t.chapter_map_knows}}">{{#knows}}<span class="member">{{member}}</span> {{/knows}}</td></tr>{{/contacts}}
    </tbody></table>
    <h2>{{t.chapter_duplicates}}</h2>
    <ul id="duplicates">{{#duplicates}}<li>{{#.}}<span class="dup">{{.}}</span> {{/.}}</li>{{/duplicates}}</ul>
    {{^duplicates}}<p>{{t.chapter_duplicates_none}}</p>{{/duplicates}}
    {{/map}}
    """

    static let party = """
    <h1>{{t.party_title}}</h1>
    <p>{{t.party_intro}}</p>
    {{#message}}<p class="error" role="alert">{{message}}</p>{{/message}}
    {{#organization}}<p>{{t.party_organization}}: <strong id="organization">{{name}}</strong></p>{{/organization}}
    {{#grants}}
    <article class="grant" id="grant-{{grant}}">
    <h2><a href="/contacts/{{contact}}">{{contactName}}</a></h2>
    <dl class="fields">
    <dt>{{t.party_organization}}</dt><dd>{{organization}}</dd>
    <dt>{{t.party_fields}}</dt><dd>{{fieldsText}}</dd>
    <dt>{{t.party_purpose}}</dt><dd>{{purpose}}</dd>
    <dt>{{t.party_expires}}</dt><dd>{{expiresText}}</dd>
    <dt>{{t.party_state}}</dt><dd class="state">{{stateText}}</dd>
    <dt>{{t.party_receipts}}</dt><dd class="receipts">{{receipts}}</dd>
    <dt>{{t.party_holds}}</dt><dd>{{#holds}}{{key}}: {{value}}<br>{{/holds}}{{^holds}}{{t.party_holds_none}}{{/holds}}</dd>
    </dl>
    {{#revocable}}<form method="post" action="/party/revoke" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="contact" value="{{contact}}"><button class="danger">{{t.party_revoke}}</button></form>{{/revocable}}
    </article>
    {{/grants}}
    {{^grants}}<p>{{t.party_none}}</p>{{/grants}}
    {{#organization}}
    <h2>{{t.party_grant_new}}</h2>
    <form method="post" action="/party/grant" class="stack" id="grant-form"><input type="hidden" name="csrf" value="{{csrf}}">
    <label for="contact">{{t.party_contact}}</label><input id="contact" name="contact" required value="{{contactValue}}">
    <fieldset><legend>{{t.party_fields}}</legend>{{#fieldChoices}}<label class="chip"><input type="checkbox" name="fields" value="{{value}}"{{#checked}} checked{{/checked}}> {{label}}</label>{{/fieldChoices}}</fieldset>
    <label for="purpose">{{t.party_purpose}}</label><input id="purpose" name="purpose" required>
    <label for="expires">{{t.party_grant_expires}}</label><input id="expires" name="expires">
    <button>{{t.party_grant_submit}}</button></form>
    {{/organization}}
    <h2>{{t.party_audit}}</h2>
    <table id="audit"><thead><tr><th scope="col">{{t.party_audit_when}}</th><th scope="col">{{t.party_audit_event}}</th><th scope="col">{{t.party_contact}}</th><th scope="col">{{t.party_audit_detail}}</th></tr></thead><tbody>
    {{#audit}}<tr><td>{{when}}</td><td>{{event}}</td><td><code>{{contactShort}}</code></td><td>{{detail}}</td></tr>{{/audit}}
    </tbody></table>
    """

    static let importPage = """
    <h1>{{t.import_title}}</h1>
    {{#message}}<p class="error" role="alert">{{message}}</p>{{/message}}
    <h2>{{t.import_upload}}</h2>
    <form method="post" action="/import" enctype="multipart/form-data" class="stack" id="upload-form">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <label for="file">{{t.import_file}}</label><input id="file" name="file" type="file" accept=".vcf,.vcard,.csv,text/vcard,text/csv" required>
    <label for="country">{{t.import_country}}</label><input id="country" name="country" size="4" autocapitalize="characters">
    <button type="submit">{{t.import_preview_submit}}</button>
    </form>
    <h2>{{t.import_export}}</h2>
    <p><a class="button" href="/export?format=vcard" download>{{t.import_export_vcard}}</a> <a class="button" href="/export?format=csv" download>{{t.import_export_csv}}</a></p>
    """

    static let importPreview = """
    <h1>{{t.import_title}}</h1>
    {{#plan}}
    <dl class="fields" id="preview">
    <dt>{{t.import_file}}</dt><dd>{{filename}}</dd>
    <dt>{{t.import_detected}}</dt><dd id="format">{{format}}</dd>
    <dt>{{t.import_created}}</dt><dd id="created">{{created}}</dd>
    <dt>{{t.import_merged}}</dt><dd id="merged">{{merged}}</dd>
    <dt>{{t.import_unchanged}}</dt><dd id="unchanged">{{unchanged}}</dd>
    <dt>{{t.import_skipped}}</dt><dd id="skipped">{{skipped}}</dd>
    </dl>
    {{#hasDropped}}<h2>{{t.import_dropped}}</h2>
    <ul class="dropped">{{#dropped}}<li>{{field}} ×{{count}}</li>{{/dropped}}</ul>{{/hasDropped}}
    <form method="post" action="/import/{{job}}/start" id="confirm-form"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">{{t.import_confirm}}</button></form>
    <h2>{{t.import_problems}}</h2>
    <ul class="problems">{{#problems}}<li><strong>{{origin}}</strong>: {{reason}}</li>{{/problems}}</ul>
    {{^problems}}<p>{{t.import_problems_none}}</p>{{/problems}}
    {{/plan}}
    """

    static let importJob = """
    <h1>{{t.import_title}}</h1>
    {{#plan}}
    <p><label for="progress">{{t.import_progress}} {{filename}}</label></p>
    <progress id="progress" max="{{total}}" value="{{committed}}" data-job="{{job}}">{{percent}} %</progress>
    <p id="progress-text" aria-live="polite">{{committed}} / {{total}} · <span id="percent">{{percent}}</span> %{{#finished}} · <strong id="done">{{t.import_done}}</strong>{{/finished}}</p>
    {{#failure}}<p class="error" role="alert">{{failure}}</p>{{/failure}}
    <h2>{{t.import_problems}}</h2>
    <ul class="problems">{{#problems}}<li><strong>{{origin}}</strong>: {{reason}}</li>{{/problems}}</ul>
    {{^problems}}<p>{{t.import_problems_none}}</p>{{/problems}}
    {{^finished}}<noscript><meta http-equiv="refresh" content="1"></noscript>{{/finished}}
    {{/plan}}
    """

    static let error = """
    <h1>{{t.error_title}}</h1>
    <p class="error" role="alert" id="error">{{message}}</p>
    <p><a href="{{back}}">{{t.error_back}}</a></p>
    """
}
