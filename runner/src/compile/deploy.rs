//! `irr deploy DIR --stack-name NAME --parameter EvidenceBucket=B`: creates or updates the
//! stack `irr compile` wrote.
//!
//! A compiled stack is bigger than CloudFormation's 51,200-byte `TemplateBody` (the state
//! machine is inside it), so the template is first written to the evidence bucket under
//! `irr-deploy/STACK/SHA256.yaml` (content-addressed, with S3 computing its SHA-256: a
//! deployed template is kept as evidence of what ran) and the stack is made from that URL.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use irr_forensics::awserr::describe;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::actions::AwsClients;

/// How long a create or update may take.
const STACK_WAIT: Duration = Duration::from_secs(30 * 60);

/// What `irr deploy` did.
#[derive(Debug)]
pub struct Deployed {
    /// The stack's id.
    pub stack_id: String,
    /// Created, updated, or already up to date.
    pub action: &'static str,
    /// The stack's outputs.
    pub outputs: serde_json::Map<String, Value>,
}

/// Reads `DIR/stack.yaml`, refusing anything that is not a compiled irr stack.
pub fn read_stack(dir: &Path) -> Result<String, String> {
    let path = dir.join("stack.yaml");
    // Bounded (2 MiB: CloudFormation takes a template of at most 1 MB), UTF-8, never
    // blocking on a FIFO: the folder may not be the caller's own.
    let text = crate::load::read_file(&path)
        .map_err(|d| d.message)?
        .text()
        .to_owned();
    let parsed: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: not YAML: {e}", path.display()))?;
    let machine = parsed
        .get("Resources")
        .and_then(|r| r.get("StateMachine"))
        .and_then(|m| m.get("Type"))
        .and_then(serde_yaml::Value::as_str);
    if machine != Some("AWS::StepFunctions::StateMachine") {
        return Err(format!(
            "{}: not a stack `irr compile --target step-functions` wrote (it has no Resources.StateMachine)",
            path.display()
        ));
    }
    Ok(text)
}

/// Creates or updates `stack_name` from `template`; `endpoint` is the emulator's URL when
/// there is an endpoint override (the template's URL is then path-style on it).
pub async fn deploy(
    aws: &AwsClients,
    region: &str,
    endpoint: Option<&str>,
    stack_name: &str,
    template: &str,
    parameters: &[(String, String)],
) -> Result<Deployed, String> {
    let bucket = parameters
        .iter()
        .find(|(k, _)| k == "EvidenceBucket")
        .map(|(_, v)| v.clone())
        .ok_or("--parameter EvidenceBucket=BUCKET is required: the stack's evidence bucket, where the template is kept too")?;
    let sha = hex(&sha2::Sha256::digest(template.as_bytes()));
    let key = format!("irr-deploy/{stack_name}/{sha}.yaml");
    aws.s3
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(template.as_bytes().to_vec().into())
        .content_type("application/yaml")
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .send()
        .await
        .map_err(|e| {
            format!(
                "writing the template to s3://{bucket}/{key}: {}",
                describe("s3", "PutObject", &e)
            )
        })?;
    let url = match endpoint {
        Some(e) => format!("{}/{bucket}/{key}", e.trim_end_matches('/')),
        None => format!("https://{bucket}.s3.{region}.amazonaws.com/{key}"),
    };
    let params: Vec<Parameter> = parameters
        .iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect();
    let cfn = &aws.cloudformation;
    let exists = match cfn.describe_stacks().stack_name(stack_name).send().await {
        Ok(o) => o
            .stacks()
            .first()
            .is_some_and(|s| s.stack_status() != Some(&StackStatus::DeleteComplete)),
        Err(e)
            if describe("cloudformation", "DescribeStacks", &e)
                .message
                .contains("does not exist") =>
        {
            false
        }
        Err(e) => return Err(describe("cloudformation", "DescribeStacks", &e).to_string()),
    };
    let started = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
    let action = if exists {
        let r = cfn
            .update_stack()
            .stack_name(stack_name)
            .template_url(&url)
            .set_parameters(Some(params))
            .capabilities(Capability::CapabilityNamedIam)
            .send()
            .await;
        match r {
            Ok(_) => "updated",
            Err(e)
                if describe("cloudformation", "UpdateStack", &e)
                    .message
                    .contains("No updates are to be performed") =>
            {
                "unchanged"
            }
            Err(e) => return Err(describe("cloudformation", "UpdateStack", &e).to_string()),
        }
    } else {
        cfn.create_stack()
            .stack_name(stack_name)
            .template_url(&url)
            .set_parameters(Some(params))
            .capabilities(Capability::CapabilityNamedIam)
            .send()
            .await
            .map_err(|e| describe("cloudformation", "CreateStack", &e).to_string())?;
        "created"
    };
    let stack = wait(aws, stack_name, started).await?;
    let mut outputs = serde_json::Map::new();
    for o in stack.outputs() {
        if let (Some(k), Some(v)) = (o.output_key(), o.output_value()) {
            outputs.insert(k.to_owned(), json!(v));
        }
    }
    Ok(Deployed {
        stack_id: stack.stack_id().unwrap_or_default().to_owned(),
        action,
        outputs,
    })
}

/// Waits until the stack is no longer in progress; a failure names the resources that failed.
async fn wait(
    aws: &AwsClients,
    stack_name: &str,
    since: aws_smithy_types::DateTime,
) -> Result<aws_sdk_cloudformation::types::Stack, String> {
    let t0 = Instant::now();
    loop {
        let o = aws
            .cloudformation
            .describe_stacks()
            .stack_name(stack_name)
            .send()
            .await
            .map_err(|e| describe("cloudformation", "DescribeStacks", &e).to_string())?;
        let Some(s) = o.stacks().first().cloned() else {
            return Err(format!("stack {stack_name} vanished"));
        };
        let status = s
            .stack_status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        if status == "CREATE_COMPLETE" || status == "UPDATE_COMPLETE" {
            return Ok(s);
        }
        if !status.ends_with("_IN_PROGRESS") {
            return Err(format!(
                "stack {stack_name} is {status}: {}",
                failures(aws, stack_name, since).await
            ));
        }
        if t0.elapsed() > STACK_WAIT {
            return Err(format!(
                "stack {stack_name} still {status} after {} minutes",
                STACK_WAIT.as_secs() / 60
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The resources that failed since `since`, from the stack's events.
async fn failures(aws: &AwsClients, stack_name: &str, since: aws_smithy_types::DateTime) -> String {
    let Ok(o) = aws
        .cloudformation
        .describe_stack_events()
        .stack_name(stack_name)
        .send()
        .await
    else {
        return "its events could not be read".into();
    };
    let failed: Vec<String> = o
        .stack_events()
        .iter()
        .filter(|e| e.timestamp().is_some_and(|t| t.secs() >= since.secs()))
        .filter(|e| {
            e.resource_status()
                .is_some_and(|s| s.as_str().ends_with("_FAILED"))
        })
        .map(|e| {
            format!(
                "{} ({}): {}",
                e.logical_resource_id().unwrap_or("?"),
                e.resource_type().unwrap_or("?"),
                e.resource_status_reason().unwrap_or("no reason given")
            )
        })
        .collect();
    if failed.is_empty() {
        "no resource reported a failure".into()
    } else {
        failed.join("; ")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::read_stack;

    /// `irr deploy DIR` reads only a bounded compiled stack, and never blocks on a FIFO.
    #[test]
    fn only_a_bounded_compiled_stack_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let stack = dir.path().join("stack.yaml");
        std::fs::write(
            &stack,
            "Resources:\n  StateMachine:\n    Type: AWS::StepFunctions::StateMachine\n",
        )
        .unwrap();
        assert!(read_stack(dir.path()).is_ok());
        std::fs::write(&stack, "Resources: {Topic: {Type: AWS::SNS::Topic}}\n").unwrap();
        let e = read_stack(dir.path()).unwrap_err();
        assert!(e.contains("not a stack"), "{e}");
        std::fs::write(&stack, vec![b'#'; crate::load::MAX_FILE_BYTES as usize + 1]).unwrap();
        let e = read_stack(dir.path()).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
        std::fs::remove_file(&stack).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &stack,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = read_stack(dir.path()).unwrap_err();
        assert!(e.contains("not a stack"), "{e}");
    }
}
