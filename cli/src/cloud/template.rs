//! What the stand-in reads from `infra/template.yaml`: queues with their redrive policies, the
//! bucket, and every function with its binary, limits, environment and event sources. Nothing
//! here names a particular function or queue: a resource added to the template appears in the
//! stand-in with no other change.
//!
//! Values are resolved the way CloudFormation does for the intrinsics the template uses (`Ref`,
//! `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`), against parameter values and the physical ids the
//! stand-in created (queue URLs and ARNs, the bucket's name).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("reading the template {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the template is not YAML: {0}")]
    Yaml(String),
    #[error("{at}: {what}")]
    Shape { at: String, what: String },
    #[error("{at}: cannot resolve {what}")]
    Unresolved { at: String, what: String },
}

fn shape(at: impl Into<String>, what: impl Into<String>) -> TemplateError {
    TemplateError::Shape {
        at: at.into(),
        what: what.into(),
    }
}

/// An SQS queue resource.
#[derive(Debug, Clone)]
pub struct QueueDef {
    pub logical_id: String,
    pub name: String,
    pub visibility_timeout: Duration,
    pub retention: Option<Duration>,
    pub redrive: Option<Redrive>,
}

#[derive(Debug, Clone)]
pub struct Redrive {
    /// Logical id of the dead-letter queue.
    pub dlq: String,
    pub max_receive_count: u32,
}

/// An SQS event source of a function.
#[derive(Debug, Clone)]
pub struct SqsSource {
    pub event: String,
    /// Logical id of the queue.
    pub queue: String,
    pub batch_size: usize,
    pub window: Duration,
    pub max_concurrency: usize,
    pub report_failures: bool,
}

/// A schedule (EventBridge rule) of a function.
#[derive(Debug, Clone)]
pub struct ScheduleDef {
    /// `<FunctionLogicalId>.<EventName>`.
    pub name: String,
    pub event: String,
    pub expression: String,
    /// The rule's constant input, which replaces the scheduled event.
    pub input: Option<String>,
}

/// An EventBridge rule on a custom bus that targets a function (`Type: EventBridgeRule`).
#[derive(Debug, Clone)]
pub struct RuleDef {
    /// `<FunctionLogicalId>.<EventName>`.
    pub name: String,
    pub event: String,
    /// The bus's name, unresolved (a `Ref` of the template's bus).
    pub bus: Value,
    /// The event pattern, as JSON.
    pub pattern: serde_json::Value,
}

/// A custom EventBridge bus (`AWS::Events::EventBus`).
#[derive(Debug, Clone)]
pub struct BusDef {
    pub logical_id: String,
    /// Its `Name`, unresolved.
    pub name: Value,
}

/// An HTTP API route of a function.
#[derive(Debug, Clone)]
pub struct RouteDef {
    /// `ANY` or a method name.
    pub method: String,
    pub path: String,
}

/// A function resource, Globals applied.
#[derive(Debug, Clone)]
pub struct FunctionDef {
    pub logical_id: String,
    pub binary: String,
    pub timeout: Duration,
    pub memory_mb: u32,
    /// Unresolved environment values, resolved once the account exists.
    env: BTreeMap<String, Value>,
    name: Value,
    pub sqs: Vec<SqsSource>,
    pub schedules: Vec<ScheduleDef>,
    pub rules: Vec<RuleDef>,
    pub routes: Vec<RouteDef>,
}

/// The parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    /// Parameter values: the defaults, and the overrides it was read with.
    pub parameters: HashMap<String, String>,
    /// Its `Conditions`, as written: [`Template::conditions`] evaluates them.
    condition_defs: Value,
    pub queues: Vec<QueueDef>,
    /// Logical ids of the S3 buckets.
    pub buckets: Vec<String>,
    pub buses: Vec<BusDef>,
    pub functions: Vec<FunctionDef>,
}

/// Physical values the intrinsics resolve to.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    pub parameters: HashMap<String, String>,
    /// `Ref` of a resource.
    pub refs: HashMap<String, String>,
    /// `Fn::GetAtt` of a resource: (logical id, attribute).
    pub attributes: HashMap<(String, String), String>,
    /// The template's conditions, evaluated against the parameters (`Fn::If`).
    pub conditions: HashMap<String, bool>,
}

impl Resolver {
    /// A value as a string, every intrinsic resolved.
    pub fn resolve(&self, at: &str, v: &Value) -> Result<String, TemplateError> {
        let unresolved = |what: String| TemplateError::Unresolved {
            at: at.to_owned(),
            what,
        };
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Mapping(m) if m.len() == 1 => {
                let (k, arg) = m.iter().next().ok_or_else(|| shape(at, "empty mapping"))?;
                match k.as_str().unwrap_or_default() {
                    "Ref" => {
                        let name = arg.as_str().ok_or_else(|| shape(at, "Ref of a non-name"))?;
                        self.reference(name)
                            .ok_or_else(|| unresolved(format!("Ref {name}")))
                    }
                    "Fn::GetAtt" => {
                        let (res, attr) = get_att(at, arg)?;
                        self.attributes
                            .get(&(res.clone(), attr.clone()))
                            .cloned()
                            .ok_or_else(|| unresolved(format!("Fn::GetAtt {res}.{attr}")))
                    }
                    "Fn::Sub" => {
                        let text = arg
                            .as_str()
                            .ok_or_else(|| shape(at, "Fn::Sub takes a string here"))?;
                        self.substitute(at, text)
                    }
                    "Fn::Join" => {
                        let parts = arg
                            .as_sequence()
                            .filter(|s| s.len() == 2)
                            .ok_or_else(|| shape(at, "Fn::Join takes [separator, list]"))?;
                        let sep = parts[0].as_str().unwrap_or_default();
                        let list = parts[1]
                            .as_sequence()
                            .ok_or_else(|| shape(at, "Fn::Join's second argument is a list"))?;
                        let items = list
                            .iter()
                            .map(|i| self.resolve(at, i))
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok(items.join(sep))
                    }
                    "Fn::If" => {
                        let parts = arg
                            .as_sequence()
                            .filter(|s| s.len() == 3)
                            .ok_or_else(|| shape(at, "Fn::If takes [condition, then, else]"))?;
                        let name = parts[0].as_str().unwrap_or_default();
                        let holds = self
                            .conditions
                            .get(name)
                            .ok_or_else(|| unresolved(format!("condition {name}")))?;
                        self.resolve(at, &parts[if *holds { 1 } else { 2 }])
                    }
                    other => Err(unresolved(format!("intrinsic {other}"))),
                }
            }
            _ => Err(shape(at, "expected a scalar or an intrinsic")),
        }
    }

    fn reference(&self, name: &str) -> Option<String> {
        self.parameters
            .get(name)
            .or_else(|| self.refs.get(name))
            .cloned()
            .or_else(|| match name {
                "AWS::Region" => Some(super::REGION.to_owned()),
                "AWS::AccountId" => Some(super::ACCOUNT.to_owned()),
                _ => None,
            })
    }

    fn substitute(&self, at: &str, text: &str) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| shape(at, "unclosed ${ in Fn::Sub"))?;
            let name = &after[..end];
            let value = match name.split_once('.') {
                Some((res, attr)) => self
                    .attributes
                    .get(&(res.to_owned(), attr.to_owned()))
                    .cloned(),
                None => self.reference(name),
            };
            out.push_str(&value.ok_or_else(|| TemplateError::Unresolved {
                at: at.to_owned(),
                what: format!("${{{name}}}"),
            })?);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Evaluates every entry of a template's `Conditions` (`Fn::Equals`, `Fn::Not`, `Fn::And`,
/// `Fn::Or`, `Condition`) against the parameters `params` holds.
fn conditions(defs: &Value, params: &Resolver) -> Result<HashMap<String, bool>, TemplateError> {
    let Some(raw) = defs.as_mapping() else {
        return Ok(HashMap::new());
    };
    fn eval(
        raw: &Mapping,
        params: &Resolver,
        at: &str,
        v: &Value,
        depth: usize,
    ) -> Result<bool, TemplateError> {
        if depth > 20 {
            return Err(shape(at, "conditions nest too deep (a cycle?)"));
        }
        let (k, arg) = v
            .as_mapping()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.iter().next())
            .ok_or_else(|| shape(at, "a condition is one intrinsic"))?;
        let list = || {
            arg.as_sequence()
                .ok_or_else(|| shape(at, "a condition function takes a list"))
        };
        match k.as_str().unwrap_or_default() {
            "Fn::Equals" => {
                let l = list()?;
                if l.len() != 2 {
                    return Err(shape(at, "Fn::Equals takes two values"));
                }
                Ok(params.resolve(at, &l[0])? == params.resolve(at, &l[1])?)
            }
            "Fn::Not" => Ok(!eval(raw, params, at, &list()?[0], depth + 1)?),
            "Fn::And" => list()?.iter().try_fold(true, |all, c| {
                Ok(all & eval(raw, params, at, c, depth + 1)?)
            }),
            "Fn::Or" => list()?.iter().try_fold(false, |any, c| {
                Ok(any | eval(raw, params, at, c, depth + 1)?)
            }),
            "Condition" => {
                let name = arg.as_str().unwrap_or_default();
                let named = raw
                    .get(name)
                    .ok_or_else(|| shape(at, format!("no condition {name}")))?;
                eval(raw, params, name, named, depth + 1)
            }
            other => Err(shape(at, format!("{other} is not a condition function"))),
        }
    }
    raw.iter()
        .map(|(name, v)| {
            let name = name.as_str().unwrap_or_default().to_owned();
            let holds = eval(raw, params, &name, v, 0)?;
            Ok((name, holds))
        })
        .collect()
}

fn get_att(at: &str, arg: &Value) -> Result<(String, String), TemplateError> {
    match arg {
        Value::Sequence(s) if s.len() == 2 => Ok((
            s[0].as_str().unwrap_or_default().to_owned(),
            s[1].as_str().unwrap_or_default().to_owned(),
        )),
        Value::String(s) => s
            .split_once('.')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .ok_or_else(|| shape(at, "Fn::GetAtt takes Resource.Attribute")),
        _ => Err(shape(at, "Fn::GetAtt takes [Resource, Attribute]")),
    }
}

/// The logical id a `Ref`/`Fn::GetAtt` points at.
fn target(v: &Value) -> Option<String> {
    if let Some(arg) = v.get("Fn::GetAtt") {
        return get_att("", arg).ok().map(|(r, _)| r);
    }
    v.get("Ref").and_then(Value::as_str).map(str::to_owned)
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn seconds(at: &str, v: Option<&Value>, default: u64) -> Result<Duration, TemplateError> {
    match v {
        None => Ok(Duration::from_secs(default)),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .map(Duration::from_secs)
            .ok_or_else(|| shape(at, "expected a whole number of seconds")),
    }
}

impl Template {
    /// The template's conditions under the parameters `resolver` holds (the stand-in's own,
    /// which replace the defaults the template was read with).
    pub fn conditions(&self, resolver: &Resolver) -> Result<HashMap<String, bool>, TemplateError> {
        conditions(&self.condition_defs, resolver)
    }

    /// Reads the template with `parameters` over the defaults (values the queues' names and the
    /// schedules depend on, such as `Stage`).
    pub fn load(
        path: &std::path::Path,
        parameters: &HashMap<String, String>,
    ) -> Result<Template, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, parameters)
    }

    pub fn parse(
        text: &str,
        parameters: &HashMap<String, String>,
    ) -> Result<Template, TemplateError> {
        let root: Value =
            serde_yaml_ng::from_str(text).map_err(|e| TemplateError::Yaml(e.to_string()))?;
        let mut values = Self::defaults(&root);
        values.extend(parameters.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut params = Resolver {
            parameters: values.clone(),
            ..Resolver::default()
        };
        params.conditions = conditions(root.get("Conditions").unwrap_or(&Value::Null), &params)?;
        let resources = root
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| shape("Resources", "missing"))?;
        let globals = get(&root, &["Globals", "Function"]).cloned();
        let mut t = Template {
            parameters: values,
            condition_defs: root.get("Conditions").cloned().unwrap_or(Value::Null),
            queues: Vec::new(),
            buckets: Vec::new(),
            buses: Vec::new(),
            functions: Vec::new(),
        };
        for (id, res) in resources {
            let id = id.as_str().unwrap_or_default().to_owned();
            let props = res.get("Properties").cloned().unwrap_or(Value::Null);
            match res.get("Type").and_then(Value::as_str) {
                Some("AWS::SQS::Queue") => t.queues.push(Self::queue(&params, &id, &props)?),
                Some("AWS::S3::Bucket") => t.buckets.push(id),
                Some("AWS::Events::EventBus") => t.buses.push(BusDef {
                    name: props
                        .get("Name")
                        .cloned()
                        .ok_or_else(|| shape(format!("Resources.{id}"), "Name is missing"))?,
                    logical_id: id,
                }),
                Some("AWS::Serverless::Function") => {
                    t.functions
                        .push(Self::function(&params, &id, res, globals.as_ref())?);
                }
                _ => {}
            }
        }
        Ok(t)
    }

    /// Parameter defaults (as strings).
    fn defaults(root: &Value) -> HashMap<String, String> {
        let mut out = HashMap::new();
        if let Some(m) = root.get("Parameters").and_then(Value::as_mapping) {
            for (k, v) in m {
                if let (Some(k), Some(d)) = (k.as_str(), v.get("Default")) {
                    let text = match d {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => continue,
                    };
                    out.insert(k.to_owned(), text);
                }
            }
        }
        out
    }

    fn queue(params: &Resolver, id: &str, props: &Value) -> Result<QueueDef, TemplateError> {
        let at = format!("Resources.{id}");
        let name = match props.get("QueueName") {
            Some(n) => params.resolve(&at, n)?,
            None => id.to_owned(),
        };
        let redrive = match props.get("RedrivePolicy") {
            None => None,
            Some(r) => Some(Redrive {
                dlq: r
                    .get("deadLetterTargetArn")
                    .and_then(target)
                    .ok_or_else(|| shape(&at, "RedrivePolicy without a deadLetterTargetArn"))?,
                max_receive_count: params
                    .resolve(
                        &at,
                        r.get("maxReceiveCount")
                            .ok_or_else(|| shape(&at, "RedrivePolicy without maxReceiveCount"))?,
                    )?
                    .parse()
                    .map_err(|_| shape(&at, "maxReceiveCount is not a number"))?,
            }),
        };
        Ok(QueueDef {
            logical_id: id.to_owned(),
            name,
            visibility_timeout: seconds(&at, props.get("VisibilityTimeout"), 30)?,
            retention: props
                .get("MessageRetentionPeriod")
                .map(|v| seconds(&at, Some(v), 0))
                .transpose()?,
            redrive,
        })
    }

    fn function(
        params: &Resolver,
        id: &str,
        res: &Value,
        globals: Option<&Value>,
    ) -> Result<FunctionDef, TemplateError> {
        let at = format!("Resources.{id}");
        let props = res.get("Properties").cloned().unwrap_or(Value::Null);
        let prop = |k: &str| {
            props
                .get(k)
                .or_else(|| globals.and_then(|g| g.get(k)))
                .cloned()
        };
        let binary = get(res, &["Metadata", "BuildProperties", "Binary"])
            .and_then(Value::as_str)
            .ok_or_else(|| shape(&at, "Metadata.BuildProperties.Binary is missing"))?
            .to_owned();
        let mut env = BTreeMap::new();
        for source in [globals, Some(&props)].into_iter().flatten() {
            if let Some(vars) =
                get(source, &["Environment", "Variables"]).and_then(Value::as_mapping)
            {
                for (k, v) in vars {
                    env.insert(k.as_str().unwrap_or_default().to_owned(), v.clone());
                }
            }
        }
        let mut f = FunctionDef {
            logical_id: id.to_owned(),
            binary,
            timeout: seconds(&at, prop("Timeout").as_ref(), 3)?,
            memory_mb: prop("MemorySize")
                .and_then(|v| v.as_u64())
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(128),
            env,
            name: props
                .get("FunctionName")
                .cloned()
                .unwrap_or_else(|| Value::String(id.to_owned())),
            sqs: Vec::new(),
            schedules: Vec::new(),
            rules: Vec::new(),
            routes: Vec::new(),
        };
        let events = props
            .get("Events")
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_else(Mapping::new);
        for (event, e) in &events {
            let event = event.as_str().unwrap_or_default().to_owned();
            let at = format!("{at}.Events.{event}");
            let p = e.get("Properties").cloned().unwrap_or(Value::Null);
            match e.get("Type").and_then(Value::as_str) {
                Some("SQS") => f.sqs.push(SqsSource {
                    queue: p
                        .get("Queue")
                        .and_then(target)
                        .ok_or_else(|| shape(&at, "Queue is missing"))?,
                    batch_size: p.get("BatchSize").and_then(Value::as_u64).unwrap_or(10) as usize,
                    window: seconds(&at, p.get("MaximumBatchingWindowInSeconds"), 0)?,
                    // Lambda's own limit for an SQS source without a ScalingConfig is the
                    // account's concurrency; the stand-in takes a small one.
                    max_concurrency: get(&p, &["ScalingConfig", "MaximumConcurrency"])
                        .and_then(Value::as_u64)
                        .unwrap_or(5) as usize,
                    report_failures: p
                        .get("FunctionResponseTypes")
                        .and_then(Value::as_sequence)
                        .is_some_and(|s| {
                            s.iter()
                                .any(|t| t.as_str() == Some("ReportBatchItemFailures"))
                        }),
                    event,
                }),
                Some("Schedule") | Some("ScheduleV2") => {
                    let expr = p
                        .get("Schedule")
                        .or_else(|| p.get("ScheduleExpression"))
                        .ok_or_else(|| shape(&at, "Schedule is missing"))?;
                    f.schedules.push(ScheduleDef {
                        name: format!("{id}.{event}"),
                        expression: params.resolve(&at, expr)?,
                        input: p.get("Input").and_then(Value::as_str).map(str::to_owned),
                        event,
                    });
                }
                Some("EventBridgeRule") => {
                    let pattern = p
                        .get("Pattern")
                        .ok_or_else(|| shape(&at, "Pattern is missing"))?;
                    f.rules.push(RuleDef {
                        name: format!("{id}.{event}"),
                        bus: p
                            .get("EventBusName")
                            .cloned()
                            .ok_or_else(|| shape(&at, "EventBusName is missing (the default bus carries no events of ours)"))?,
                        pattern: serde_json::to_value(pattern)
                            .map_err(|e| shape(&at, format!("Pattern: {e}")))?,
                        event,
                    });
                }
                Some("HttpApi") => f.routes.push(RouteDef {
                    method: p
                        .get("Method")
                        .and_then(Value::as_str)
                        .unwrap_or("ANY")
                        .to_uppercase(),
                    path: p
                        .get("Path")
                        .and_then(Value::as_str)
                        .ok_or_else(|| shape(&at, "Path is missing"))?
                        .to_owned(),
                }),
                other => {
                    return Err(shape(
                        &at,
                        format!("event type {other:?} is not run by the stand-in"),
                    ));
                }
            }
        }
        Ok(f)
    }
}

impl FunctionDef {
    /// The function's environment with every value resolved. A value that cannot be resolved
    /// (a parameter without a value) is an error naming the variable.
    pub fn environment(&self, r: &Resolver) -> Result<BTreeMap<String, String>, TemplateError> {
        self.env
            .iter()
            .map(|(k, v)| {
                let at = format!("Resources.{}.Environment.{k}", self.logical_id);
                Ok((k.clone(), r.resolve(&at, v)?))
            })
            .collect()
    }

    /// The function's name (`FunctionName`, resolved).
    pub fn name(&self, r: &Resolver) -> Result<String, TemplateError> {
        r.resolve(
            &format!("Resources.{}.FunctionName", self.logical_id),
            &self.name,
        )
    }

    /// Removes a variable from the function's environment (a test's broken template).
    pub fn without_variable(&mut self, name: &str) -> bool {
        self.env.remove(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        Template::load(
            std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../infra/template.yaml"
            )),
            &HashMap::from([("Stage".to_owned(), "t1".to_owned())]),
        )
        .unwrap()
    }

    #[test]
    fn reads_every_queue_function_and_event_of_the_template() {
        let t = template();
        // Every queue and its DLQ.
        assert_eq!(t.queues.len(), 2 * shared::bus::Queue::ALL.len());
        // One function per crate under functions/.
        let crates = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../functions"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().join("Cargo.toml").is_file())
            })
            .count();
        assert_eq!(t.functions.len(), crates);
        let sourcing = t
            .queues
            .iter()
            .find(|q| q.logical_id == "SourcingQueue")
            .unwrap();
        assert_eq!(sourcing.name, "leadfactory-t1-sourcing");
        assert_eq!(sourcing.redrive.as_ref().unwrap().dlq, "SourcingDLQ");
        assert_eq!(sourcing.redrive.as_ref().unwrap().max_receive_count, 5);
        let delivery = t.functions.iter().find(|f| f.binary == "delivery").unwrap();
        assert_eq!(delivery.sqs.len(), 2);
        assert_eq!(delivery.schedules.len(), 1);
        let targeting = t
            .functions
            .iter()
            .find(|f| f.binary == "targeting")
            .unwrap();
        assert_eq!(targeting.schedules[0].expression, "cron(0 2 * * ? *)");
        assert_eq!(targeting.timeout, Duration::from_secs(120));
        let ops = t.functions.iter().find(|f| f.binary == "ops-api").unwrap();
        assert_eq!(ops.routes[0].path, "/v1/{proxy+}");
        // The event bus and the rules on it.
        assert_eq!(t.buses.len(), 1);
        assert_eq!(t.buses[0].logical_id, "EventBus");
        let qa = t
            .functions
            .iter()
            .find(|f| f.binary == "qa-sampler")
            .unwrap();
        assert_eq!(qa.rules.len(), 1);
        assert_eq!(qa.rules[0].name, "QaSamplerFunction.RunFinished");
        assert_eq!(
            qa.rules[0].pattern,
            serde_json::json!({"source": ["leadfactory"], "detail-type": ["RunFinished"]})
        );
    }

    #[test]
    fn environments_resolve_globals_then_the_function_against_physical_ids() {
        let t = template();
        let mut r = Resolver {
            parameters: t.parameters.clone(),
            ..Resolver::default()
        };
        r.parameters
            .insert("DatabaseSecretArn".into(), "arn:db".into());
        r.parameters
            .insert("VendorSecretArn".into(), "arn:vendors".into());
        r.parameters
            .insert("DatabaseBackupSecretArn".into(), "arn:db-backup".into());
        r.conditions = t.conditions(&r).unwrap();
        assert!(!r.conditions["CreateDatabase"], "the database is given");
        r.refs.insert("ArtifactsBucket".into(), "bucket-1".into());
        r.refs
            .insert("SourcingQueue".into(), "http://q/sourcing".into());
        r.refs
            .insert("ReportsQueue".into(), "http://q/reports".into());
        r.refs.insert("EventBus".into(), "leadfactory-prod".into());
        let targeting = t
            .functions
            .iter()
            .find(|f| f.binary == "targeting")
            .unwrap();
        let env = targeting.environment(&r).unwrap();
        assert_eq!(env["LF_QUEUE_SOURCING_URL"], "http://q/sourcing");
        assert_eq!(env["LF_SECRET_ARNS"], "arn:db,arn:vendors");
        assert_eq!(env["LF_BUCKET"], "bucket-1");
        assert_eq!(env["LF_MAX_RECEIVE_COUNT"], "5");
        assert_eq!(env["LF_EVENT_BUS_NAME"], "leadfactory-prod");
        let scoring = t.functions.iter().find(|f| f.binary == "scoring").unwrap();
        // The function's own value wins over Globals'.
        assert_eq!(scoring.environment(&r).unwrap()["LF_SECRET_ARNS"], "arn:db");
        let sourcing = t.functions.iter().find(|f| f.binary == "sourcing").unwrap();
        let err = sourcing.environment(&r).unwrap_err().to_string();
        assert!(err.contains("EnrichmentQueue"), "{err}");
        // The template's own database: the generated secret, through the proxy.
        r.parameters
            .insert("DatabaseSecretArn".into(), String::new());
        r.parameters
            .insert("DatabaseBackupSecretArn".into(), String::new());
        r.conditions = t.conditions(&r).unwrap();
        assert!(r.conditions["CreateDatabase"]);
        r.refs
            .insert("DatabaseAppSecret".into(), "arn:generated".into());
        r.attributes.insert(
            ("DatabaseProxy".into(), "Endpoint".into()),
            "proxy.example".into(),
        );
        let env = targeting.environment(&r).unwrap();
        assert_eq!(env["LF_SECRET_ARNS"], "arn:generated,arn:vendors");
        assert_eq!(env["LF_DATABASE_HOST"], "proxy.example");
    }
}
