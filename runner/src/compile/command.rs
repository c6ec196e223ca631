//! `irr compile` and `irr deploy`: the commands around [`super::compile`] and
//! [`super::deploy`] (arguments parsed and the playbook loaded by `crate::cli`).

use std::io::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::cli::Output;
use crate::exit_codes::{self, Exit};
use crate::model::Playbook;
use crate::validate::ResolvedInputs;

macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `irr compile FILE --target step-functions --out DIR [--input k=v]...`: the inputs given
/// with `--input` are fixed in the definition (the defaults stay the execution's).
pub fn compile(pb: &Playbook, inputs: ResolvedInputs, out: &Path, output: Output) -> Exit {
    let fixed: serde_json::Map<String, Value> = inputs
        .values
        .into_iter()
        .filter(|(k, _)| !inputs.defaulted.contains(k))
        .collect();
    let compiled = match super::compile(pb, fixed) {
        Ok(c) => c,
        Err(problems) => {
            crate::cli::report_problems(&problems, std::slice::from_ref(&pb.source), output);
            return exit_codes::INVALID;
        }
    };
    match super::write(out, &compiled) {
        Ok(paths) => {
            for p in paths {
                out!("wrote {}", p.display());
            }
            exit_codes::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write into {}: {e}", out.display());
            exit_codes::RUN_FAILED
        }
    }
}

/// `irr deploy DIR --stack-name NAME --parameter K=V...`.
pub fn deploy(
    dir: &Path,
    stack_name: &str,
    parameter: &[String],
    aws: &crate::aws::AwsOptions,
    output: Output,
) -> Exit {
    let fail = |m: String, code: Exit| {
        eprintln!("error: {m}");
        code
    };
    let template = match super::deploy::read_stack(dir) {
        Ok(t) => t,
        Err(m) => return fail(m, exit_codes::INVALID),
    };
    let valid_name = stack_name.len() <= 60
        && stack_name.starts_with(|c: char| c.is_ascii_alphabetic())
        && stack_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !valid_name {
        return fail(format!("--stack-name {stack_name}: a stack name is a letter, then letters, digits and -, at most 60 (it also names the state machine and its role, NAME-irr)"), exit_codes::INVALID);
    }
    let mut params = Vec::new();
    for p in parameter {
        match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => params.push((k.to_owned(), v.to_owned())),
            _ => {
                return fail(
                    format!("--parameter {p}: expected KEY=VALUE"),
                    exit_codes::INVALID,
                )
            }
        }
    }
    let result = crate::cli::block_on(async {
        let conn = crate::aws::connect(aws).await.map_err(|e| e.to_string())?;
        super::deploy::deploy(
            &conn.clients,
            &conn.region,
            aws.endpoint_url.as_deref(),
            stack_name,
            &template,
            &params,
        )
        .await
    });
    match result {
        Ok(d) => {
            if output == Output::Json {
                out!(
                    "{}",
                    json!({"stack_id": d.stack_id, "action": d.action, "outputs": d.outputs})
                );
            } else {
                out!("stack {stack_name} {}: {}", d.action, d.stack_id);
                for (k, v) in &d.outputs {
                    out!("  {k}: {}", v.as_str().unwrap_or_default());
                }
            }
            exit_codes::SUCCESS
        }
        Err(m) => fail(m, exit_codes::RUN_FAILED),
    }
}

/// `irr approve TOKEN --yes|--no`: answers the approval the token belongs to, naming the
/// caller (STS) as who approved or declined. A token is opaque: only its size is checked.
pub fn approve(token: &str, yes: bool, aws: &crate::aws::AwsOptions, output: Output) -> Exit {
    if token.is_empty() || token.len() > 4096 || token.chars().any(char::is_control) {
        eprintln!("error: TOKEN: not a task token (the one in the approval message, 1 to 4096 printable characters)");
        return exit_codes::INVALID;
    }
    let result = crate::cli::block_on(async {
        let conn = crate::aws::connect(aws).await.map_err(|e| e.to_string())?;
        let who = conn
            .clients
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                irr_forensics::awserr::describe("sts", "GetCallerIdentity", &e).to_string()
            })?
            .arn()
            .unwrap_or("unknown")
            .to_owned();
        let sfn = &conn.clients.sfn;
        if yes {
            sfn.send_task_success()
                .task_token(token)
                .output(json!({"approved_by": who}).to_string())
                .send()
                .await
                .map_err(|e| {
                    irr_forensics::awserr::describe("states", "SendTaskSuccess", &e).to_string()
                })?;
        } else {
            sfn.send_task_failure()
                .task_token(token)
                .error("irr.Declined")
                .cause(format!("declined by {who}"))
                .send()
                .await
                .map_err(|e| {
                    irr_forensics::awserr::describe("states", "SendTaskFailure", &e).to_string()
                })?;
        }
        Ok::<String, String>(who)
    });
    match result {
        Ok(who) => {
            let answer = if yes { "approved" } else { "declined" };
            if output == Output::Json {
                out!("{}", json!({"answer": answer, "by": who}));
            } else {
                out!("{answer} by {who}");
            }
            exit_codes::SUCCESS
        }
        Err(m) => {
            eprintln!("error: {m}");
            exit_codes::RUN_FAILED
        }
    }
}
