//! OpenAI Chat Completions (`POST /v1/chat/completions`) with structured output: the answer
//! must match a JSON schema, and a refusal or a non-matching answer is a typed error.

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::core::Usage;
use super::{CallContext, Vendor, VendorError, VendorHttp};
use crate::domain::capped;

/// The largest structured answer read: far above what `max_tokens` lets an honest model write.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn system(c: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: c.into(),
        }
    }
    pub fn user(c: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: c.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatResponse {
    #[serde(deserialize_with = "capped::text::<{ capped::ID }, _>")]
    pub id: String,
    #[serde(deserialize_with = "capped::text::<{ capped::SHORT }, _>")]
    pub object: String,
    pub created: i64,
    #[serde(deserialize_with = "capped::text::<{ capped::NAME }, _>")]
    pub model: String,
    #[serde(deserialize_with = "capped::few")]
    pub choices: Vec<Choice>,
    pub usage: Option<TokenUsage>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Choice {
    pub index: u32,
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub finish_reason: Option<String>,
    pub message: AssistantMessage,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AssistantMessage {
    #[serde(deserialize_with = "capped::text::<{ capped::SHORT }, _>")]
    pub role: String,
    pub content: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::MESSAGE }, _>")]
    pub refusal: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

/// A structured answer with what it cost in tokens.
#[derive(Debug, Clone)]
pub struct Structured<T> {
    pub value: T,
    pub raw: String,
    pub usage: TokenUsage,
    pub model: String,
}

#[derive(Debug)]
pub struct OpenAiClient {
    http: VendorHttp,
    key: SecretString,
}

impl OpenAiClient {
    pub fn new(http: VendorHttp, key: SecretString) -> Self {
        Self { http, key }
    }

    pub fn http(&self) -> &VendorHttp {
        &self.http
    }

    pub async fn chat(
        &self,
        ctx: &CallContext,
        req: &ChatRequest,
    ) -> Result<ChatResponse, VendorError> {
        let url = self.http.url("/v1/chat/completions");
        let (resp, _) = self
            .http
            .json(
                ctx,
                "chat/completions",
                |c| c.post(&url).bearer_auth(self.key.expose_secret()).json(req),
                |r: &ChatResponse| {
                    let u = r.usage.unwrap_or_default();
                    Usage {
                        tokens_in: u.prompt_tokens,
                        tokens_out: u.completion_tokens,
                    }
                },
            )
            .await?;
        Ok(resp)
    }

    /// Asks for JSON matching `schema` (strict structured output) and parses it as `T`.
    #[allow(clippy::too_many_arguments)]
    pub async fn structured<T: DeserializeOwned>(
        &self,
        ctx: &CallContext,
        model: &str,
        temperature: f32,
        max_tokens: u32,
        schema_name: &str,
        schema: serde_json::Value,
        messages: Vec<Message>,
    ) -> Result<Structured<T>, VendorError> {
        let req = ChatRequest {
            model: model.to_owned(),
            messages,
            temperature: Some(temperature),
            max_tokens: Some(max_tokens),
            response_format: Some(serde_json::json!({
                "type": "json_schema",
                "json_schema": { "name": schema_name, "schema": schema, "strict": true }
            })),
        };
        let resp = self.chat(ctx, &req).await?;
        let usage = resp.usage.unwrap_or_default();
        let choice = resp
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| self.http.malformed("no choices", b""))?;
        if let Some(r) = choice.message.refusal {
            return Err(VendorError::Refused {
                vendor: Vendor::OpenAi,
                message: r,
            });
        }
        if choice.finish_reason.as_deref() == Some("length") {
            return Err(self.http.malformed("answer cut off at max_tokens", b""));
        }
        let raw = choice
            .message
            .content
            .ok_or_else(|| self.http.malformed("no content", b""))?;
        // An answer larger than any we ask for is not read (max_tokens bounds an honest one).
        if raw.len() > MAX_ANSWER_BYTES {
            return Err(self.http.malformed(
                &format!("answer of {} bytes, over {MAX_ANSWER_BYTES}", raw.len()),
                raw.as_bytes(),
            ));
        }
        // The model's answer is outside text twice over: a JSON document inside a string. Both
        // layers are made storable (it is logged in `llm_logs`).
        let raw = crate::domain::storable(
            &String::from_utf8_lossy(&crate::domain::storable_json(raw.as_bytes())),
            usize::MAX,
        );
        let value = serde_json::from_str::<T>(&raw).map_err(|e| {
            self.http.malformed(
                &format!("answer does not match {schema_name}: {e}"),
                raw.as_bytes(),
            )
        })?;
        Ok(Structured {
            value,
            raw,
            usage,
            model: resp.model,
        })
    }
}
