import Mustache

/// The dashboard's pages as mustache templates (compiled into the binary: no files to ship, nothing fetched; the
/// page works on an air-gapped host). `{{name}}` is HTML-escaped by the renderer (quotes too, so it is safe inside
/// quoted attributes); nothing here uses the unescaped `{{{name}}}` form except the SVG charts and URLs the server
/// builds itself from escaped parts.
enum UITemplates {
    static let library: MustacheLibrary = {
        var library = MustacheLibrary()
        for (name, text) in templates {
            do {
                try library.register(text, named: name)
            } catch {
                preconditionFailure("dashboard template \(name) does not parse: \(error)")
            }
        }
        return library
    }()

    static let templates: [(String, String)] = [
        ("header", header), ("footer", footer), ("login", login), ("message", message), ("overview", overview),
        ("sessions", sessions), ("session", session), ("edit", edit), ("confirm-delete", confirmDelete),
        ("preview", preview), ("injections", injections), ("injection", injection), ("live", live),
        ("parts", parts),
    ]

    static let style = """
        :root{color-scheme:light}
        *{box-sizing:border-box}
        body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;background:#fff}
        a{color:#0b4fa8}a:focus,button:focus,input:focus,select:focus,textarea:focus{outline:3px solid #f0a000;outline-offset:1px}
        header{background:#16324f;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;gap:.75rem;align-items:center}
        header a{color:#fff;font-weight:600}header .brand{margin-right:auto;font-weight:700}
        nav ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.75rem}
        main{padding:1rem;max-width:1200px;margin:0 auto;overflow-wrap:anywhere}
        h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
        .scroll{overflow-x:auto;max-width:100%}
        table{border-collapse:collapse;width:100%;min-width:0}
        th,td{border-bottom:1px solid #c8c8c8;padding:.35rem .5rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}
        th{background:#f2f4f7}
        td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
        pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f7f9;border:1px solid #c8c8c8;padding:.6rem;max-width:100%}
        form.inline{display:inline}
        label{display:block;font-weight:600;margin:.4rem 0 .15rem}
        input[type=text],input[type=password],input[type=search],select,textarea{font:inherit;padding:.3rem;border:1px solid #767676;border-radius:3px;max-width:100%}
        textarea{width:100%;min-height:5rem}
        button{font:inherit;padding:.3rem .8rem;border:1px solid #16324f;background:#16324f;color:#fff;border-radius:3px;cursor:pointer}
        button.secondary{background:#fff;color:#16324f}button.danger{background:#a4161a;border-color:#a4161a}
        .error{color:#a4161a;font-weight:600}.muted{color:#595959}
        .stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(16rem,1fr));gap:.75rem}
        .stat{border:1px solid #c8c8c8;border-radius:4px;padding:.6rem}
        .stat .value{font-size:1.3rem;font-weight:700}
        svg.chart{width:100%;height:48px;display:block}
        .row{display:flex;flex-wrap:wrap;gap:.5rem;align-items:flex-end}
        ul#live{list-style:none;padding:0}ul#live li{border-bottom:1px solid #c8c8c8;padding:.35rem 0}
        """

    static let header = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} · memproxy</title>
        <style>{{{style}}}</style></head>
        <body><header><span class="brand">memproxy</span>
        {{#nav}}<nav id="nav" aria-label="Main"><ul>
        <li><a href="/ui">Overview</a></li><li><a href="/ui/sessions">Sessions</a></li>
        <li><a href="/ui/injections">Injections</a></li><li><a href="/ui/live">Live</a></li>
        </ul></nav>
        {{#loggedIn}}<form id="logout" class="inline" method="post" action="/ui/logout">
        <input type="hidden" name="csrf" value="{{csrf}}"><button class="secondary" type="submit">Log out</button></form>{{/loggedIn}}
        {{/nav}}
        </header>
        <main id="content">
        """

    static let footer = """
        </main></body></html>
        """

    static let login = """
        {{> header}}
        <h1>Log in</h1>
        {{#error}}<p class="error" role="alert">{{error}}</p>{{/error}}
        <form id="login-form" method="post" action="/ui/login">
        <label for="key">Admin key (admin.api_key)</label>
        <input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
        <p><button type="submit">Log in</button></p>
        </form>
        {{> footer}}
        """

    static let message = """
        {{> header}}
        <h1>{{heading}}</h1>
        <p{{#isError}} class="error" role="alert"{{/isError}}>{{text}}</p>
        {{#back}}<p><a href="{{back}}">Back</a></p>{{/back}}
        {{> footer}}
        """

    static let overview = """
        {{> header}}
        <h1>Overview</h1>
        <section id="overview" aria-label="Memory activity">
        <p class="muted">Since start ({{uptime}}) and over the last hour. Charts: per minute, last 60 minutes.</p>
        <div class="stats">
        {{#stats}}<div class="stat"><div>{{label}}</div>
        <div><span class="value" data-stat="{{name}}" data-window="start">{{start}}</span> since start ·
        <span data-stat="{{name}}" data-window="hour">{{hour}}</span> last hour</div>
        {{{chart}}}</div>
        {{/stats}}
        </div>
        <h2>Store</h2>
        <p>{{sessions}} sessions · {{memories}} memories ({{episodic}} episodic, {{semantic}} semantic,
        {{procedural}} procedural) · injection records: {{injections}}</p>
        </section>
        {{> footer}}
        """

    static let sessions = """
        {{> header}}
        <h1>Sessions</h1>
        <form id="session-search" method="get" action="/ui/sessions" class="row">
        <div><label for="prefix">Session id starts with</label>
        <input id="prefix" name="prefix" type="search" value="{{prefix}}"></div>
        <div><button type="submit">Search</button></div></form>
        <div class="scroll"><table id="sessions"><caption class="muted">{{caption}}</caption>
        <thead><tr><th scope="col">Session</th><th class="num" scope="col">Memories</th><th class="num" scope="col">Episodic</th>
        <th class="num" scope="col">Semantic</th><th class="num" scope="col">Procedural</th><th scope="col">Last activity</th></tr></thead>
        <tbody>{{#rows}}<tr data-session="{{id}}"><td><a href="{{href}}">{{id}}</a></td>
        <td class="num">{{total}}</td>
        <td class="num">{{episodic}}</td>
        <td class="num">{{semantic}}</td>
        <td class="num">{{procedural}}</td>
        <td>{{lastActivity}}</td></tr>{{/rows}}</tbody></table></div>
        {{#next}}<p><a id="next-page" href="{{next}}">Next page</a></p>{{/next}}
        {{> footer}}
        """

    static let session = """
        {{> header}}
        <h1>Session {{session}}</h1>
        <p><a id="export" href="{{base}}/export">Export (JSON lines)</a> ·
        <a href="/ui/injections?session={{sessionQuery}}">Injections of this session</a></p>
        <h2>Recall preview</h2>
        <form id="recall-preview" method="get" action="{{base}}/preview" class="row">
        <div style="flex:1 1 16rem"><label for="query">A user message</label>
        <input id="query" name="query" type="text" style="width:100%" required></div>
        <div><button type="submit">Preview the block</button></div></form>
        <h2>Memories</h2>
        <form method="get" action="{{base}}" class="row" aria-label="Filter memories">
        <div><label for="type">Type</label><select id="type" name="type">
        {{#types}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{label}}</option>{{/types}}
        </select></div><div><button type="submit" class="secondary">Filter</button></div></form>
        <div class="scroll"><table id="memories"><thead><tr><th scope="col">Content</th><th scope="col">Type</th>
        <th scope="col">Created</th><th scope="col">Actions</th></tr></thead>
        <tbody>{{#memories}}<tr data-memory-id="{{id}}"><td class="content">{{content}}</td><td>{{type}}</td>
        <td>{{created}}</td><td><a class="edit-memory" href="{{href}}/edit">Edit</a>
        · <a class="delete-memory" href="{{href}}/delete">Delete</a></td></tr>{{/memories}}
        {{^memories}}<tr><td colspan="4" class="muted">No memories{{#filtered}} of this type{{/filtered}}.</td></tr>{{/memories}}
        </tbody></table></div>
        {{#next}}<p><a id="next-page" href="{{next}}">Older memories</a></p>{{/next}}
        <h2>Add a memory</h2>
        <form id="add-memory" method="post" action="{{base}}/memories">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <label for="add-content">Text</label><textarea id="add-content" name="content" required></textarea>
        <label for="add-type">Type</label><select id="add-type" name="type">
        <option value="semantic">semantic</option><option value="episodic">episodic</option>
        <option value="procedural">procedural</option></select>
        <p><button type="submit">Add</button></p></form>
        {{> footer}}
        """

    static let edit = """
        {{> header}}
        <h1>Edit memory</h1>
        <p class="muted">Session <a href="{{back}}">{{session}}</a> · {{id}}</p>
        <form id="edit-memory" method="post" action="{{action}}">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <label for="edit-content">Text</label><textarea id="edit-content" name="content" required>{{content}}</textarea>
        <label for="edit-type">Type</label><select id="edit-type" name="type">
        {{#types}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{value}}</option>{{/types}}</select>
        <p><button type="submit">Save</button> <a href="{{back}}">Cancel</a></p></form>
        {{> footer}}
        """

    static let confirmDelete = """
        {{> header}}
        <h1>Delete this memory?</h1>
        <pre>{{content}}</pre>
        <p class="muted">Session <a href="{{back}}">{{session}}</a> · {{id}} · {{type}}. It will never be injected again.</p>
        <form id="confirm-delete" method="post" action="{{action}}">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <button class="danger" type="submit">Delete</button> <a href="{{back}}">Cancel</a></form>
        {{> footer}}
        """

    static let parts = """
        <div class="scroll"><table id="{{tableID}}"><thead><tr><th scope="col">Memory</th>
        <th class="num" scope="col">Content</th><th class="num" scope="col">Near</th><th class="num" scope="col">Far</th>
        <th class="num" scope="col">Date</th><th class="num" scope="col">× Type</th><th class="num" scope="col">× Time</th>
        <th class="num" scope="col">Dense</th><th class="num" scope="col">Score</th></tr></thead><tbody>
        {{#memories}}<tr data-memory-id="{{id}}"><td><a href="{{href}}">{{type}}</a>: {{content}}</td>
        <td class="num" data-part="content">{{content_part}}</td><td class="num" data-part="near">{{near}}</td>
        <td class="num" data-part="far">{{far}}</td><td class="num" data-part="date">{{date}}</td>
        <td class="num" data-part="type_weight">{{type_weight}}</td><td class="num" data-part="temporal">{{temporal}}</td>
        <td class="num" data-part="dense">{{dense}}</td><td class="num" data-part="score">{{score}}</td></tr>{{/memories}}
        {{^memories}}<tr><td colspan="9" class="muted">Nothing recalled.</td></tr>{{/memories}}
        </tbody></table></div>
        """

    static let preview = """
        {{> header}}
        <h1>Recall preview</h1>
        <p class="muted">Session <a href="{{back}}">{{session}}</a> · the block the proxy would inject for
        “{{query}}”{{#recall}} · recall: {{recall}}{{/recall}}. Procedural memories lead every block and carry no parts.</p>
        <pre id="preview-block">{{block}}</pre>
        {{> parts}}
        {{> footer}}
        """

    static let injections = """
        {{> header}}
        <h1>Injections</h1>
        <form id="injection-filter" method="get" action="/ui/injections" class="row">
        <div><label for="f-session">Session</label><input id="f-session" name="session" type="text" value="{{session}}"></div>
        <div><label for="f-request">Request id</label><input id="f-request" name="request_id" type="text" value="{{requestID}}"></div>
        <div><label for="f-api">API</label><select id="f-api" name="api">
        {{#apis}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{label}}</option>{{/apis}}</select></div>
        <div><button type="submit">Filter</button></div></form>
        <div class="scroll"><table id="injections"><thead><tr><th scope="col">When</th><th scope="col">Request</th>
        <th scope="col">Session</th><th scope="col">API</th><th scope="col">Model</th><th class="num" scope="col">Memories</th>
        <th class="num" scope="col">Tokens</th><th class="num" scope="col">Recall ms</th></tr></thead><tbody>
        {{#rows}}<tr data-request-id="{{requestID}}"><td>{{created}}</td><td><a href="{{href}}">{{requestID}}</a></td>
        <td><a href="{{sessionHref}}">{{session}}</a></td><td>{{api}}</td><td>{{model}}</td><td class="num">{{memories}}</td>
        <td class="num">{{tokens}}</td><td class="num">{{recallMs}}</td></tr>{{/rows}}
        {{^rows}}<tr><td colspan="8" class="muted">No injections.</td></tr>{{/rows}}
        </tbody></table></div>
        {{#next}}<p><a id="next-page" href="{{next}}">Older injections</a></p>{{/next}}
        {{> footer}}
        """

    static let injection = """
        {{> header}}
        <h1>Request {{requestID}}</h1>
        <section id="injection" aria-label="What the model was shown">
        <div class="scroll"><table><tbody>
        <tr><th scope="row">Session</th><td data-field="session"><a href="{{sessionHref}}">{{session}}</a></td></tr>
        <tr><th scope="row">When</th><td>{{created}}</td></tr>
        <tr><th scope="row">API</th><td data-field="api">{{api}}</td></tr>
        <tr><th scope="row">Model</th><td data-field="model">{{model}}</td></tr>
        <tr><th scope="row">Tokens</th><td data-field="tokens">{{tokens}}</td></tr>
        <tr><th scope="row">Recall ms</th><td data-field="recall_ms">{{recallMs}}</td></tr>
        <tr><th scope="row">Recalled with</th><td>{{query}}</td></tr>
        </tbody></table></div>
        <h2>Injected block, exactly as the model saw it</h2>
        <pre id="injected-block">{{block}}</pre>
        <h2>Memories and their recorded scores</h2>
        <div class="scroll"><table id="injected-memories"><thead><tr><th scope="col">Memory</th>
        <th class="num" scope="col">Score</th></tr></thead><tbody>
        {{#recorded}}<tr data-memory-id="{{id}}"><td><a href="{{href}}">{{id}}</a>{{#content}}: {{content}}{{/content}}
        {{^content}} <span class="muted">(deleted since)</span>{{/content}}</td><td class="num">{{score}}</td></tr>{{/recorded}}
        </tbody></table></div></section>
        <section id="replayed-now" aria-label="Recall replayed now">
        <h2>Why: recall replayed now</h2>
        <p class="muted">Recall run again for the text this request recalled with, against the session <strong>as it is
        now</strong> (memories added, edited or deleted since change it); the block above is what the model saw.</p>
        {{#replayed}}{{> parts}}{{/replayed}}{{^replayed}}<p class="muted">No text was recorded for this request.</p>{{/replayed}}
        </section>
        {{> footer}}
        """

    static let live = """
        {{> header}}
        <h1>Live injections</h1>
        <p><button id="pause" type="button" aria-pressed="false">Pause</button>
        <span id="live-status" class="muted" role="status">Connecting…</span></p>
        <ul id="live" aria-live="polite"></ul>
        <script>
        (function () {
          var list = document.getElementById('live'), status = document.getElementById('live-status');
          var button = document.getElementById('pause'), paused = false, held = [];
          function show(item) {
            var li = document.createElement('li'), a = document.createElement('a');
            a.href = '/ui/injections/' + encodeURIComponent(item.request_id);
            a.textContent = item.request_id;
            li.setAttribute('data-request-id', item.request_id);
            li.appendChild(a);
            li.appendChild(document.createTextNode(' · ' + item.session_id + ' · ' + item.api + ' · ' +
              item.memory_ids.length + ' memories · ' + item.tokens + ' tokens · ' + item.recall_ms.toFixed(2) + ' ms'));
            list.insertBefore(li, list.firstChild);
            while (list.children.length > 200) list.removeChild(list.lastChild);
          }
          button.addEventListener('click', function () {
            paused = !paused;
            button.setAttribute('aria-pressed', paused ? 'true' : 'false');
            button.textContent = paused ? 'Resume' : 'Pause';
            if (!paused) { held.forEach(show); held = []; }
          });
          var source = new EventSource('/ui/live/events');
          source.addEventListener('open', function () { status.textContent = 'Connected'; });
          source.addEventListener('error', function () { status.textContent = 'Reconnecting…'; });
          source.addEventListener('injection', function (event) {
            var item = JSON.parse(event.data);
            if (paused) { held.push(item); } else { show(item); }
          });
        })();
        </script>
        {{> footer}}
        """
}
