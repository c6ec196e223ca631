//! The playbook's top-level sections besides the steps: `metadata`, `inputs`, `evidence`.

use super::*;

impl Validator<'_> {
    pub(super) fn metadata(&mut self, root: &Node) -> Option<Metadata> {
        let Some(node) = root.get("metadata") else {
            self.missing(root, "metadata", TOP_KEYS, &root.span, "missing \"metadata\"", "add metadata with a name and a version, e.g. \"metadata: {name: my-playbook, version: 1.0.0}\"");
            return None;
        };
        if matches!(node.kind, NodeKind::Null)
            && root
                .as_map()
                .unwrap_or(&[])
                .iter()
                .any(|(k, _)| k.as_str().is_some_and(|k| METADATA_KEYS.contains(&k)))
        {
            // `name:` and `version:` written unindented below it: reported there.
            return None;
        }
        self.mapping(node, "metadata", METADATA_KEYS)?;
        let at = key_span(root, "metadata").unwrap_or_else(|| node.span.clone());
        let name = match node.get("name") {
            None => {
                self.missing(node, "name", METADATA_KEYS, &at, "missing \"metadata.name\"", "add a name such as \"ec2-instance-compromise\"");
                None
            }
            Some(n) => self.string(n, "metadata.name").and_then(|s| {
                if is_name(s, false) {
                    Some(s.to_owned())
                } else {
                    let fixed = slug(s);
                    self.help(&n.span, format!("metadata.name \"{s}\" must be lowercase letters, digits and hyphens, starting with a letter or digit"), format!("e.g. \"{fixed}\""));
                    None
                }
            }),
        };
        let version = match node.get("version") {
            None => {
                self.missing(
                    node,
                    "version",
                    METADATA_KEYS,
                    &at,
                    "missing \"metadata.version\"",
                    "add a semantic version such as \"1.0.0\"",
                );
                None
            }
            Some(n) => {
                let text = n.scalar_text();
                match (&n.kind, text) {
                    (NodeKind::Str(s), _) if is_semver(s) => Some(s.clone()),
                    (_, Some(_)) => {
                        let t = self.source_text(&n.span);
                        self.help(
                            &n.span,
                            format!("metadata.version \"{t}\" is not a semantic version"),
                            "write MAJOR.MINOR.PATCH, e.g. \"1.0.0\"",
                        );
                        None
                    }
                    (_, None) => {
                        self.help(
                            &n.span,
                            "metadata.version must be a string",
                            "write MAJOR.MINOR.PATCH, e.g. \"1.0.0\"",
                        );
                        None
                    }
                }
            }
        };
        let description = node
            .get("description")
            .and_then(|n| self.string(n, "metadata.description"))
            .map(str::to_owned);
        let owner = node
            .get("owner")
            .and_then(|n| self.string(n, "metadata.owner"))
            .map(str::to_owned);
        let labels = match node.get("labels") {
            None => Vec::new(),
            Some(n) => match n.as_seq() {
                Some(items) => items
                    .iter()
                    .filter_map(|i| self.string(i, "a label").map(str::to_owned))
                    .collect(),
                None => {
                    self.help(
                        &n.span,
                        format!("metadata.labels must be a list, found {}", n.type_name()),
                        "e.g. \"labels: [ec2, containment]\"",
                    );
                    Vec::new()
                }
            },
        };
        Some(Metadata {
            name: name?,
            version: version?,
            description,
            owner,
            labels,
        })
    }

    pub(super) fn inputs(&mut self, node: &Node) -> Vec<InputDecl> {
        let mut out = Vec::new();
        if matches!(node.kind, NodeKind::Null) {
            self.help(
                &node.span,
                "\"inputs\" is empty",
                "declare inputs under it, e.g. \"  instance_id: {type: instance_id}\", or remove it",
            );
            return out;
        }
        let Some(entries) = node.as_map() else {
            self.help(
                &node.span,
                format!(
                    "inputs must be a mapping of input names to declarations, found {}",
                    node.type_name()
                ),
                "e.g. \"inputs: {instance_id: {type: instance_id}}\"",
            );
            return out;
        };
        for (k, decl) in entries {
            let name = k.scalar_text().unwrap_or_default();
            if !is_ident(&name) {
                let fixed = slug(&name).replace('-', "_");
                self.help(&k.span, format!("input name \"{name}\" must be lowercase letters, digits and underscores, starting with a letter"), format!("e.g. \"{fixed}\""));
                self.renamed_inputs.push(fixed);
            }
            if decl.as_map().is_none() {
                out.push(self.input_not_declared(k, decl, name));
                continue;
            }
            self.mapping(decl, &format!("input \"{name}\""), INPUT_KEYS);
            let ty = match decl.get("type") {
                None => {
                    self.help(
                        &decl.span,
                        format!("input \"{name}\" has no type"),
                        format!("add \"type:\" with one of: {}", INPUT_TYPE_NAMES.join(", ")),
                    );
                    None
                }
                Some(t) => self.input_type(t, decl, &name),
            };
            let description = decl
                .get("description")
                .and_then(|n| self.string(n, "an input's description"))
                .map(str::to_owned);
            let default = decl.get("default").map(Node::to_json);
            let secret = self.input_secret(decl, &name);
            if let (true, Some(dnode)) = (secret, decl.get("default")) {
                self.help(
                    &dnode.span,
                    format!("secret input \"{name}\" may not have a default: it would be written in the playbook"),
                    format!("remove the default and give the value at run time with --input {name}=VALUE or the environment variable {}", crate::secrets::env_var(&name)),
                );
            }
            if let (Some(ty), Some(default), Some(dnode)) = (&ty, &default, decl.get("default")) {
                self.input_default(ty, default, dnode, &name);
            }
            // An input whose type is wrong is still declared (as any type), so references to
            // it do not pile up more errors; the playbook does not validate anyway.
            let ty = ty.or(Some(ValueType::Any));
            if let Some(ty) = ty {
                out.push(InputDecl {
                    name,
                    ty,
                    description,
                    default,
                    secret,
                    span: k.span.clone(),
                });
            }
        }
        out
    }

    /// An input written as a value or a bare type instead of a declaration: reported, and
    /// declared (as any type) so that references to it do not pile up more errors.
    fn input_not_declared(&mut self, k: &Node, decl: &Node, name: String) -> InputDecl {
        // `instance_id: i-0abc...` (a value) or `instance_id: instance_id` (a type).
        let what = decl.scalar_text().unwrap_or_default();
        let ty = if ValueType::scalar_from_name(&what).is_some() || what == "list" {
            what.clone()
        } else {
            // A value: the most specific type it fits.
            let json = decl.to_json();
            [
                "instance_id",
                "volume_id",
                "arn",
                "account_id",
                "region",
                "cidr",
                "access_key_id",
                "duration",
                "integer",
                "boolean",
            ]
            .into_iter()
            .find(|t| ValueType::scalar_from_name(t).is_some_and(|ty| ty.check(&json).is_ok()))
            .unwrap_or("string")
            .to_owned()
        };
        self.help(
            &decl.span,
            format!("input \"{name}\" must be a declaration (a mapping), found {}", decl.type_name()),
            format!("declare it as \"{name}: {{type: {ty}}}\"; its value is given at run time with --input {name}=VALUE, or as its default"),
        );
        InputDecl {
            name,
            ty: ValueType::Any,
            description: None,
            default: None,
            secret: false,
            span: k.span.clone(),
        }
    }

    /// An input's default: its templates (which may refer to nothing), else its fit to the type.
    fn input_default(&mut self, ty: &ValueType, default: &Value, dnode: &Node, name: &str) {
        if template::strings_in(default)
            .iter()
            .any(|s| template::is_template(s))
        {
            let scope_steps = HashMap::new();
            let scope = Scope {
                inputs: &[],
                steps: &scope_steps,
                current: None,
                current_is_finally: false,
                item: false,
                steps_allowed: false,
                inputs_allowed: false,
            };
            self.templates_in(dnode, &scope);
        } else if let Err(e) = ty.check(default) {
            self.help(
                &dnode.span,
                format!("the default of input \"{name}\" does not fit its type: {e}"),
                format!("give a default that is {ty}, or remove it to make the input required"),
            );
        }
    }

    /// `secret:` of an input: a boolean (absent is false).
    pub(super) fn input_secret(&mut self, decl: &Node, name: &str) -> bool {
        match decl.get("secret") {
            None => false,
            Some(n) => match n.to_json() {
                Value::Bool(b) => b,
                _ => {
                    self.help(
                        &n.span,
                        format!(
                            "\"secret\" of input \"{name}\" must be true or false, found {}",
                            n.type_name()
                        ),
                        "write \"secret: true\"",
                    );
                    false
                }
            },
        }
    }

    pub(super) fn input_type(&mut self, t: &Node, decl: &Node, name: &str) -> Option<ValueType> {
        let tname = self.string(t, "an input's type")?;
        if tname == "list" {
            let Some(items) = decl.get("items") else {
                self.help(
                    &t.span,
                    format!("input \"{name}\" is a list but does not say of what"),
                    "add \"items:\" with the item type, e.g. \"items: arn\"",
                );
                return None;
            };
            let iname = self.string(items, "items")?;
            match ValueType::scalar_from_name(iname) {
                Some(it) => Some(ValueType::List(Box::new(it))),
                None => {
                    let help = suggestion(iname, INPUT_TYPE_NAMES);
                    self.help(&items.span, format!("unknown item type \"{iname}\""), help);
                    None
                }
            }
        } else {
            if let Some(items) = decl.get("items") {
                self.help(
                    &items.span,
                    format!(
                        "\"items\" only applies to inputs of type list, and \"{name}\" is {tname}"
                    ),
                    "remove \"items\", or make the type \"list\"",
                );
            }
            match ValueType::scalar_from_name(tname) {
                Some(ty) => Some(ty),
                None => {
                    let help = suggestion(tname, INPUT_TYPE_NAMES);
                    self.help(&t.span, format!("unknown input type \"{tname}\""), help);
                    None
                }
            }
        }
    }

    pub(super) fn evidence(
        &mut self,
        node: Option<&Node>,
        inputs: &[InputDecl],
        infos: &HashMap<String, StepInfo>,
    ) -> EvidenceDecl {
        let mut ev = EvidenceDecl::default();
        let Some(node) = node else { return ev };
        if self.mapping(node, "evidence", EVIDENCE_KEYS).is_none() {
            return ev;
        }
        if let Some(loc) = node.get("location") {
            if let Some(s) = self.string(loc, "evidence.location") {
                let scope = Scope {
                    inputs,
                    steps: infos,
                    current: None,
                    current_is_finally: false,
                    item: false,
                    steps_allowed: false,
                    inputs_allowed: true,
                };
                self.templates_in(loc, &scope);
                if s.trim().is_empty() {
                    self.help(
                        &loc.span,
                        "evidence.location is empty",
                        "give \"s3://bucket/prefix\" or a local directory",
                    );
                } else if s.starts_with("s3:") && !s.starts_with("s3://") {
                    self.help(
                        &loc.span,
                        format!("evidence.location \"{s}\" is not an S3 URL"),
                        "write \"s3://bucket/prefix\"",
                    );
                }
                ev.location = Some(s.to_owned());
            }
        }
        if let Some(r) = node.get("retention_days") {
            match r.kind {
                NodeKind::Int(d) if (1..=36_500).contains(&d) => ev.retention_days = d as u32,
                _ => {
                    let t = r.scalar_text().unwrap_or_else(|| r.type_name().to_owned());
                    self.help(&r.span, format!("evidence.retention_days \"{t}\" must be a whole number of days from 1 to 36500"), "e.g. \"retention_days: 90\"");
                }
            }
        }
        if let Some(m) = node.get("lock_mode") {
            match m.as_str() {
                Some("governance" | "GOVERNANCE") => ev.lock_mode = LockMode::Governance,
                Some("compliance" | "COMPLIANCE") => ev.lock_mode = LockMode::Compliance,
                _ => {
                    let t = m.scalar_text().unwrap_or_default();
                    self.help(
                        &m.span,
                        format!("evidence.lock_mode \"{t}\" is not an Object Lock mode"),
                        "use \"governance\" or \"compliance\"",
                    );
                }
            }
        }
        if let Some(k) = node.get("signing_key") {
            ev.signing_key = self.signing_key(k);
        }
        ev
    }

    /// `evidence.signing_key`: a KMS key ARN or a PEM file path, checked by the same parser
    /// the run uses. The value is never quoted (it may be a key pasted by mistake).
    fn signing_key(&mut self, node: &Node) -> Option<String> {
        let Some(s) = node.as_str() else {
            self.help(
                &node.span,
                format!(
                    "evidence.signing_key must be a string, not {}",
                    node.type_name()
                ),
                "give a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID) or a PEM file path",
            );
            return None;
        };
        if s.contains("{{") {
            self.help(
                &node.span,
                "evidence.signing_key cannot hold a template",
                "give the KMS key ARN or the PEM file path itself, or pass --signing-key",
            );
            return None;
        }
        match irr_forensics::KeyRef::parse(s) {
            Ok(_) => Some(s.trim().to_owned()),
            Err(why) => {
                self.help(
                    &node.span,
                    format!("evidence.signing_key: {why}"),
                    "e.g. \"signing_key: arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\" or \"signing_key: keys/seal.pem\"",
                );
                None
            }
        }
    }
}
