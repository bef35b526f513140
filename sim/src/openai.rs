//! OpenAI `POST /v1/chat/completions`. Answers are deterministic for a prompt. When a JSON schema
//! is requested the answer is generated from the schema itself, with text chosen from the facts
//! the prompt mentions (so insights talk about the site's real problems); `json_object` gets a
//! JSON object; otherwise plain text. `usage` counts about four characters a token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::shapes::{bearer_ok, gate, openai_error};
use crate::state::SimState;

/// (keyword in the prompt, title, description, fix)
const PROBLEMS: &[(&str, &str, &str, &str)] = &[
    (
        "viewport",
        "Make the site work on phones",
        "The page has no mobile viewport, so phones show a shrunken desktop page that visitors have to pinch and zoom.",
        "Add a responsive viewport meta tag and test the layout at phone widths.",
    ),
    (
        "performance score",
        "Speed up the homepage",
        "The homepage loads slowly on mobile; visitors leave before it finishes.",
        "Compress and resize images, defer non-critical scripts and enable caching.",
    ),
    (
        "lcp",
        "Show the main content sooner",
        "The largest element on the page appears late on a phone connection.",
        "Preload the hero image and serve it in a modern format at the right size.",
    ),
    (
        "cls",
        "Stop the page from jumping",
        "Content shifts while the page loads, which makes people tap the wrong thing.",
        "Give images and embeds fixed dimensions and reserve space for late content.",
    ),
    (
        "title",
        "Give the page a clear title",
        "The page title is missing or generic, so search results show little about the business.",
        "Write a unique title with the business name, service and city.",
    ),
    (
        "meta_description",
        "Write a search description",
        "There is no meta description, so search engines pick random text for the snippet.",
        "Add a 150-character description that says what you offer and where.",
    ),
    (
        "h1",
        "Add a main heading",
        "The page has no main heading, which hurts both search ranking and readability.",
        "Add one H1 that names the business and its main service.",
    ),
    (
        "https",
        "Secure the site with HTTPS",
        "The site does not redirect to HTTPS, so browsers mark it as not secure.",
        "Install a certificate and redirect every HTTP request to HTTPS.",
    ),
    (
        "jquery",
        "Update outdated code",
        "The site runs an old jQuery version with known security issues.",
        "Upgrade the theme and libraries, or move to a maintained site builder.",
    ),
    (
        "copyright",
        "Show the site is current",
        "The footer's copyright year is years old, which makes the business look closed.",
        "Update the footer and review opening hours and menus.",
    ),
    (
        "analytics",
        "Measure your visitors",
        "No analytics is installed, so there is no way to know what brings customers in.",
        "Install privacy-friendly analytics and track calls and bookings.",
    ),
    (
        "seo score",
        "Improve search visibility",
        "Basic search-engine signals are weak, so the site ranks below competitors.",
        "Fix titles, descriptions and headings, and claim the Google Business Profile.",
    ),
];

fn hash(s: &str) -> u64 {
    let d = Sha256::digest(s.as_bytes());
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

struct Ctx {
    prompt: String,
    business: String,
    picks: Vec<usize>,
    n: u64,
}

impl Ctx {
    fn new(prompt: &str) -> Self {
        let lower = prompt.to_lowercase();
        // A problem is picked only when a fact line shows it: missing, none, old, or a low score.
        let bad_line = |kw: &str| {
            lower.lines().any(|l| {
                l.contains(kw)
                    && (l.contains("missing")
                        || l.contains("none")
                        || l.contains("jquery version")
                        || l.contains("copyright year")
                        || l.split(|c: char| !c.is_ascii_digit() && c != '.')
                            .filter_map(|n| n.parse::<f64>().ok())
                            .any(|n| {
                                (l.contains("/100") && n < 70.0)
                                    || (l.starts_with("lcp") && n > 2.5)
                                    || (l.starts_with("cls") && n > 0.1 && n < 1.0)
                            }))
            })
        };
        let mut picks: Vec<usize> = PROBLEMS
            .iter()
            .enumerate()
            .filter(|(_, p)| bad_line(p.0))
            .map(|(i, _)| i)
            .collect();
        for i in 0..PROBLEMS.len() {
            if !picks.contains(&i) {
                picks.push(i);
            }
        }
        let business = prompt
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Business:")
                    .map(|b| b.trim().to_owned())
            })
            .unwrap_or_else(|| "your business".into());
        Self {
            prompt: prompt.to_owned(),
            business,
            picks,
            n: hash(prompt),
        }
    }
}

fn text_for(name: &str, idx: usize, ctx: &Ctx) -> String {
    let p = PROBLEMS[ctx.picks[idx % ctx.picks.len()]];
    match name {
        "title" | "name" | "headline" => p.1.to_owned(),
        "description" | "problem" | "summary" | "explanation" => p.2.to_owned(),
        "fix" | "recommendation" | "solution" => p.3.to_owned(),
        "step" => {
            let parent = PROBLEMS[ctx.picks[(idx / 10) % ctx.picks.len()]];
            match idx % 10 {
                0 => parent.3.to_owned(),
                1 => "Check the result with PageSpeed Insights on a phone.".to_owned(),
                _ => "Ask your web developer or site builder to make the change if you cannot."
                    .to_owned(),
            }
        }
        "impact" => ["high", "medium", "high"][idx % 3].to_owned(),
        "effort" => ["low", "medium", "low"][idx % 3].to_owned(),
        "subject" => {
            let s = format!("Three quick website fixes for {}", ctx.business);
            if s.len() > 60 {
                "Three quick fixes for your website".to_owned()
            } else {
                s
            }
        }
        "body" => {
            // The link the prompt says to use, if it gives one: a model that follows instructions.
            let link = ctx.prompt.lines().find_map(|l| {
                l.split_once("Report link")
                    .and_then(|(_, r)| r.split_once(": "))
                    .map(|(_, u)| u.trim().to_owned())
            });
            let offer = match link {
                Some(u) => format!("I put the details, with step-by-step fixes, into a short report: {u}"),
                None => "I put the details, with step-by-step fixes, into a short report. Happy to send it over if useful.".to_owned(),
            };
            format!(
                "Hi {b} team,\n\nI looked at your website and found a few things that are likely costing you customers. {d} {d2}\n\n{offer}\n\nBest regards",
                b = ctx.business,
                d = PROBLEMS[ctx.picks[0]].2,
                d2 = PROBLEMS[ctx.picks[1 % ctx.picks.len()]].2
            )
        }
        _ => format!("{} ({})", p.1, ctx.n % 97),
    }
}

/// A value matching `schema` (the subset of JSON Schema structured outputs allow).
fn generate(schema: &Value, name: &str, idx: usize, ctx: &Ctx) -> Value {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        return options
            .get((ctx.n as usize + idx) % options.len().max(1))
            .cloned()
            .unwrap_or(Value::Null);
    }
    let ty = schema.get("type").and_then(|t| {
        t.as_str().map(str::to_owned).or_else(|| {
            t.as_array()
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
    });
    match ty.as_deref() {
        Some("object") => {
            let mut out = serde_json::Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    out.insert(k.clone(), generate(s, k, idx, ctx));
                }
            }
            Value::Object(out)
        }
        Some("array") => {
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(3) as usize;
            let max = schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .unwrap_or(min.max(3) as u64) as usize;
            let n = min.max(3).min(max.max(min));
            let items = schema
                .get("items")
                .cloned()
                .unwrap_or(json!({ "type": "string" }));
            // Items of a nested array know their parent's index (idx * 10 + i).
            Value::Array(
                (0..n)
                    .map(|i| generate(&items, name.trim_end_matches('s'), idx * 10 + i, ctx))
                    .collect(),
            )
        }
        Some("integer") => {
            json!(schema.get("minimum").and_then(Value::as_i64).unwrap_or(1) + (idx as i64 % 3))
        }
        Some("number") => json!(schema.get("minimum").and_then(Value::as_f64).unwrap_or(0.5)),
        Some("boolean") => json!(true),
        _ => json!(text_for(name, idx, ctx)),
    }
}

pub async fn chat(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !bearer_ok(&headers, &state.cfg.openai_key) {
        return openai_error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            Some("invalid_api_key"),
        );
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                &format!("We could not parse the JSON body of your request. ({e})"),
                "invalid_request_error",
                None,
            );
        }
    };
    let Some(model) = req
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
    else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
        );
    };
    let Some(messages) = req
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "'messages' must be a non-empty array",
            "invalid_request_error",
            None,
        );
    };
    let mut prompt = String::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if !["system", "developer", "user", "assistant", "tool"].contains(&role) {
            return openai_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "Invalid value: '{role}'. Supported values are: 'system', 'developer', 'user', 'assistant', and 'tool'."
                ),
                "invalid_request_error",
                Some("invalid_value"),
            );
        }
        match m.get("content") {
            Some(Value::String(s)) => {
                prompt.push_str(s);
                prompt.push('\n');
            }
            _ => {
                return openai_error(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid type for 'messages[{i}].content'"),
                    "invalid_request_error",
                    None,
                );
            }
        }
    }
    let format = req.get("response_format");
    let kind = format
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("text");
    if kind == "json_object" && !prompt.to_lowercase().contains("json") {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
            "invalid_request_error",
            None,
        );
    }
    if let Err(r) = gate(&state, "openai").await {
        return r;
    }
    let ctx = Ctx::new(&prompt);
    let content = match kind {
        "json_schema" => {
            let Some(schema) = format.and_then(|f| f.get("json_schema")).and_then(|s| s.get("schema")) else {
                return openai_error(StatusCode::BAD_REQUEST, "Missing required parameter: 'response_format.json_schema.schema'.", "invalid_request_error", Some("missing_required_parameter"));
            };
            generate(schema, "root", 0, &ctx).to_string()
        }
        "json_object" => json!({ "title": text_for("title", 0, &ctx), "summary": text_for("description", 0, &ctx) }).to_string(),
        _ => text_for("body", 0, &ctx),
    };
    let prompt_tokens = (ctx.prompt.len() / 4).max(1) as u64;
    let completion_tokens = (content.len() / 4).max(1) as u64;
    let body = json!({
        "id": format!("chatcmpl-{}", &hex::encode(ctx.n.to_le_bytes())),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": format!("{model}-2024-07-18"),
        "system_fingerprint": "fp_sim",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": content, "refusal": null }, "logprobs": null, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens }
    });
    (
        StatusCode::OK,
        [(
            "x-request-id",
            format!("req_{}", &hex::encode(ctx.n.to_be_bytes())),
        )],
        axum::Json(body),
    )
        .into_response()
}
