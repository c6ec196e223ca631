//! `stack.yaml`: the compiled state machine, its execution role (the permissions `irr
//! policy` prints for the playbook, plus what the integrations need), and one EventBridge
//! rule per finding source of the playbook's `trigger:`.

use serde_json::{json, Map, Value};

use crate::model::Playbook;

/// The stack as YAML (CloudFormation's long-form intrinsics, `Fn::Sub` and `Fn::GetAtt`).
pub fn stack(pb: &Playbook, definition: &Value) -> String {
    let plan = crate::plan::plan(pb, Map::new(), &crate::plan::PlanContext::default());
    let policy = crate::policy::policy(&plan);
    let role_name = pb
        .targets
        .as_ref()
        .map_or("irr-responder", |t| t.role.as_str());
    let own_role = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${AWS::StackName}-irr";
    let machine_arn = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${AWS::StackName}";
    let mut statements = policy["Statement"].as_array().cloned().unwrap_or_default();
    statements.extend([
        json!({"Sid": "EvidenceObjects", "Effect": "Allow", "Action": ["s3:PutObject", "s3:PutObjectRetention"],
               "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${EvidenceBucket}/${EvidencePrefix}/*"}}),
        json!({"Sid": "TargetAccounts", "Effect": "Allow", "Action": ["sts:AssumeRole"],
               "Resource": [{"Fn::Sub": format!("arn:${{AWS::Partition}}:iam::*:role/{role_name}")}, {"Fn::Sub": own_role}]}),
        json!({"Sid": "DistributedMapChildren", "Effect": "Allow",
               "Action": ["states:StartExecution", "states:DescribeExecution", "states:StopExecution"],
               "Resource": [{"Fn::Sub": machine_arn}, {"Fn::Sub": format!("{}/*", machine_arn.replace(":stateMachine:", ":execution:"))}]}),
    ]);
    // `control.approve`: the question and its task token go to the approval topic.
    let approvals = pb.all_steps().any(|s| s.action.name == "control.approve");
    if approvals {
        statements.push(json!({"Sid": "Approvals", "Effect": "Allow", "Action": ["sns:Publish"], "Resource": {"Ref": "ApprovalTopicArn"}}));
    }
    let mut resources = Map::new();
    resources.insert("ExecutionRole".into(), json!({
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": {"Fn::Sub": "${AWS::StackName}-irr"},
            "Description": format!("irr playbook {} {}: the state machine's role (tasks in this account assume it again through Credentials.RoleArn)", pb.metadata.name, pb.metadata.version),
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole",
                 "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}},
                {"Effect": "Allow", "Principal": {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}, "Action": "sts:AssumeRole",
                 "Condition": {"ArnEquals": {"aws:PrincipalArn": {"Fn::Sub": own_role}}}},
            ]},
            "Policies": [{"PolicyName": "irr-playbook", "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}}],
        }
    }));
    let mut substitutions = Map::new();
    substitutions.insert("EvidenceBucket".into(), json!({"Ref": "EvidenceBucket"}));
    substitutions.insert("EvidencePrefix".into(), json!({"Ref": "EvidencePrefix"}));
    substitutions.insert(
        "TargetRoleArn".into(),
        json!({"Fn::GetAtt": ["ExecutionRole", "Arn"]}),
    );
    if approvals {
        substitutions.insert(
            "ApprovalTopicArn".into(),
            json!({"Ref": "ApprovalTopicArn"}),
        );
    }
    resources.insert(
        "StateMachine".into(),
        json!({
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {
                "StateMachineName": {"Ref": "AWS::StackName"},
                "StateMachineType": "STANDARD",
                "RoleArn": {"Fn::GetAtt": ["ExecutionRole", "Arn"]},
                "DefinitionString": serde_json::to_string_pretty(definition).unwrap_or_default(),
                "DefinitionSubstitutions": substitutions,
            }
        }),
    );
    let rules = super::trigger::rules(pb);
    if !rules.is_empty() {
        resources.insert("TriggerRole".into(), json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
                "Policies": [{"PolicyName": "start-execution", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "states:StartExecution", "Resource": {"Ref": "StateMachine"}}]}}],
            }
        }));
        for (name, rule) in rules {
            resources.insert(name, rule);
        }
    }
    let mut template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("irr playbook {} {} compiled for AWS Step Functions (irr compile; sha256 {})", pb.metadata.name, pb.metadata.version, pb.sha256),
        "Parameters": {
            "EvidenceBucket": {
                "Type": "String",
                "Description": "The evidence bucket (versioning and S3 Object Lock): every step's before-state is written to it, locked for the playbook's retention",
                "AllowedPattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
            },
            "EvidencePrefix": {
                "Type": "String",
                "Default": "cases",
                "Description": "Key prefix of the evidence: PREFIX/CASE/EXECUTION/",
                "AllowedPattern": "^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$",
            },
        },
        "Resources": resources,
        "Outputs": {
            "StateMachineArn": {"Value": {"Ref": "StateMachine"}},
            "ExecutionRoleArn": {"Value": {"Fn::GetAtt": ["ExecutionRole", "Arn"]}},
        },
    });
    if approvals {
        template["Parameters"]["ApprovalTopicArn"] = json!({
            "Type": "String",
            "Description": "The SNS topic approvals are published to (the question and the task token to answer with `irr approve TOKEN --yes|--no`)",
            "AllowedPattern": "^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$",
        });
    }
    let mut text = format!(
        "# irr compile: playbook {} {} (sha256 {}) for AWS Step Functions.\n# Deploy with `irr deploy DIR --stack-name NAME --parameter EvidenceBucket=BUCKET`.\n",
        pb.metadata.name, pb.metadata.version, pb.sha256
    );
    text.push_str(&serde_yaml::to_string(&template).unwrap_or_default());
    text
}
