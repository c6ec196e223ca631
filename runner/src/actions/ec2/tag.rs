//! `ec2.tag_resources`: tag EC2 resources, recording the values replaced.

use super::*;

/// Parameters of `ec2.tag_resources`.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagParams {
    /// EC2 resource ids (instances, volumes, snapshots, ...)
    pub resource_ids: Vec<String>,
    /// tag key -> value
    // Existing values of the same keys are replaced.
    pub tags: BTreeMap<String, String>,
}

/// `ec2.tag_resources`: its declaration (see [`Action`]); the parameters are [`TagParams`].
pub struct TagResources;

impl Action for TagResources {
    type Params = TagParams;
    const DECLARATION: Declaration = Declaration {
        name: "ec2.tag_resources",
        summary: "tag EC2 resources",
        exactly_one_of: &[],
        outputs: &[],
        api_calls: &["ec2:DescribeTags", "ec2:CreateTags"],
        permissions: &[
            // The values the keys had before are recorded.
            perm("ec2:DescribeTags", ANY),
            perm(
                "ec2:CreateTags",
                &[
                    "arn:aws:ec2:{region}:{account}:*/*",
                    "arn:aws:ec2:{region}::snapshot/*",
                ],
            ),
        ],
        mutating: true,
        idempotency: "tagging again sets the same values",
        undo: Some("ec2:DeleteTags"),
    };
    async fn run(ctx: &ActionCtx, params: TagParams) -> Result<ActionOutput, ActionError> {
        tag_resources(ctx, params).await
    }
}

/// `ec2.tag_resources`: sets tags on EC2 resources. Records the values the keys had before
/// (output `previous`: resource id -> key -> old value or null). Idempotent. Undo: put back
/// `previous` (`ec2:CreateTags` / `ec2:DeleteTags`).
pub async fn tag_resources(ctx: &ActionCtx, p: TagParams) -> Result<ActionOutput, ActionError> {
    if p.resource_ids.is_empty() || p.tags.is_empty() {
        return Err(ActionError::Params(
            "ec2.tag_resources: `resource_ids` and `tags` must not be empty".into(),
        ));
    }
    if let Some(k) = p
        .tags
        .keys()
        .find(|k| k.to_ascii_lowercase().starts_with("aws:"))
    {
        return Err(ActionError::Params(format!(
            "ec2.tag_resources: tag key `{k}`: the aws: prefix is reserved"
        )));
    }
    let existing = ctx
        .aws
        .ec2
        .describe_tags()
        .filters(filter("resource-id", p.resource_ids.iter().cloned()))
        .filters(filter("key", p.tags.keys().cloned()))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(read_err("ec2", "DescribeTags"))?;
    let mut previous = Map::new();
    for r in &p.resource_ids {
        let mut m = Map::new();
        for k in p.tags.keys() {
            let v = existing
                .iter()
                .find(|t| t.resource_id() == Some(r.as_str()) && t.key() == Some(k.as_str()))
                .and_then(|t| t.value());
            m.insert(k.clone(), v.map(Value::from).unwrap_or(Value::Null));
        }
        previous.insert(r.clone(), Value::Object(m));
    }
    let artifact = ctx.evidence(
        "tags-before.json",
        &json!({"resource_ids": p.resource_ids, "tags": p.tags, "previous": previous}),
        "ec2:DescribeTags",
    )?;
    let tags: Vec<Tag> = p.tags.iter().map(|(k, v)| tag(k, v)).collect();
    ctx.mutating_dry(
        "ec2",
        "CreateTags",
        json!({"resource_ids": p.resource_ids, "tags": p.tags}),
        ctx.aws
            .ec2
            .create_tags()
            .set_resources(Some(p.resource_ids.clone()))
            .set_tags(Some(tags))
            .dry_run(ctx.dry_run)
            .send(),
        |_| json!({}),
    )
    .await?;
    Ok(ActionOutput::default()
        .with("previous", previous)
        .with("artifacts", vec![artifact]))
}
