//! The OCI runtime spec's `linux.seccomp` object (config-linux.md,
//! "Seccomp"), as runc, crun and youki read it: `defaultAction`,
//! `defaultErrnoRet`, `architectures`, `syscalls[]` with `names`, `action`,
//! `errnoRet` and `args[]` (`index`, `value`, `valueTwo`, `op`).

use serde_json::{json, Map, Value};

use super::SeccompError;
use crate::{
    compile::{SeccompEntry, SeccompPolicy},
    profile::{syscalls, ArgCmp, ArgOp, SeccompAction},
};

/// The `architectures` we emit: the native ABI only (see the module docs).
const ARCHITECTURES: &[&str] = &["SCMP_ARCH_X86_64"];

fn action_name(a: SeccompAction) -> Result<(&'static str, Option<u16>), SeccompError> {
    Ok(match a {
        SeccompAction::Allow => ("SCMP_ACT_ALLOW", None),
        SeccompAction::Log => ("SCMP_ACT_LOG", None),
        SeccompAction::Errno(n) => ("SCMP_ACT_ERRNO", Some(n)),
        SeccompAction::KillProcess => ("SCMP_ACT_KILL_PROCESS", None),
        SeccompAction::KillThread => ("SCMP_ACT_KILL_THREAD", None),
        SeccompAction::Trap => ("SCMP_ACT_TRAP", None),
        // runc reads the trace value from errnoRet.
        SeccompAction::Trace(n) => ("SCMP_ACT_TRACE", Some(n)),
        SeccompAction::Notify => {
            return Err(SeccompError::Unsupported(
                "`notify` needs a listener socket (listenerPath), which a profile does not name; it cannot be exported to OCI".into(),
            ))
        }
    })
}

fn op_name(op: ArgOp) -> &'static str {
    match op {
        ArgOp::Eq => "SCMP_CMP_EQ",
        ArgOp::Ne => "SCMP_CMP_NE",
        ArgOp::Lt => "SCMP_CMP_LT",
        ArgOp::Le => "SCMP_CMP_LE",
        ArgOp::Gt => "SCMP_CMP_GT",
        ArgOp::Ge => "SCMP_CMP_GE",
        ArgOp::MaskedEq => "SCMP_CMP_MASKED_EQ",
    }
}

fn arg_json(a: &ArgCmp) -> Value {
    match (a.op, a.mask) {
        // For SCMP_CMP_MASKED_EQ runtimes take value = mask, valueTwo = datum.
        (ArgOp::MaskedEq, Some(mask)) => {
            json!({"index": a.index, "value": mask, "valueTwo": a.value, "op": op_name(a.op)})
        }
        _ => json!({"index": a.index, "value": a.value, "valueTwo": 0, "op": op_name(a.op)}),
    }
}

/// `policy` as an OCI `linux.seccomp` object. Entries with the same action
/// and conditions share one `syscalls[]` element.
pub fn to_oci(policy: &SeccompPolicy) -> Result<Value, SeccompError> {
    let mut root = Map::new();
    let (default, default_ret) = action_name(policy.default)?;
    root.insert("defaultAction".into(), json!(default));
    if let Some(n) = default_ret {
        root.insert("defaultErrnoRet".into(), json!(n));
    }
    root.insert("architectures".into(), json!(ARCHITECTURES));
    let mut groups: Vec<(SeccompAction, Vec<ArgCmp>, Vec<String>)> = Vec::new();
    for e in policy.entries.iter().filter(|e| e.action != policy.default) {
        match groups
            .iter_mut()
            .find(|(a, args, _)| *a == e.action && *args == e.args)
        {
            Some((_, _, names)) => names.push(e.syscall.clone()),
            None => groups.push((e.action, e.args.clone(), vec![e.syscall.clone()])),
        }
    }
    let mut out = Vec::new();
    for (action, args, names) in groups {
        let (name, ret) = action_name(action)?;
        let mut s = Map::new();
        s.insert("names".into(), json!(names));
        s.insert("action".into(), json!(name));
        if let Some(n) = ret {
            s.insert("errnoRet".into(), json!(n));
        }
        if !args.is_empty() {
            s.insert(
                "args".into(),
                Value::Array(args.iter().map(arg_json).collect()),
            );
        }
        out.push(Value::Object(s));
    }
    root.insert("syscalls".into(), Value::Array(out));
    Ok(Value::Object(root))
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> SeccompError {
    SeccompError::OciJson {
        field: field.into(),
        message: message.into(),
    }
}

fn parse_action(
    name: &Value,
    ret: Option<&Value>,
    at: &str,
) -> Result<SeccompAction, SeccompError> {
    let number = |what: &str| -> Result<u16, SeccompError> {
        let n = ret
            .and_then(Value::as_u64)
            .unwrap_or(if what == "errno" { 1 } else { 0 });
        u16::try_from(n).map_err(|_| bad(at, format!("{what} value {n} out of range")))
    };
    Ok(match name.as_str() {
        Some("SCMP_ACT_ALLOW") => SeccompAction::Allow,
        Some("SCMP_ACT_LOG") => SeccompAction::Log,
        Some("SCMP_ACT_ERRNO") => SeccompAction::Errno(number("errno")?),
        Some("SCMP_ACT_KILL_PROCESS") => SeccompAction::KillProcess,
        Some("SCMP_ACT_KILL") | Some("SCMP_ACT_KILL_THREAD") => SeccompAction::KillThread,
        Some("SCMP_ACT_TRAP") => SeccompAction::Trap,
        Some("SCMP_ACT_TRACE") => SeccompAction::Trace(number("trace")?),
        Some("SCMP_ACT_NOTIFY") => SeccompAction::Notify,
        other => return Err(bad(at, format!("unknown action {other:?}"))),
    })
}

fn parse_arg(v: &Value, at: &str) -> Result<ArgCmp, SeccompError> {
    let num = |k: &str| v.get(k).and_then(Value::as_u64);
    let index = num("index")
        .and_then(|i| u8::try_from(i).ok())
        .filter(|i| *i <= 5)
        .ok_or_else(|| bad(format!("{at}.index"), "an argument index 0-5 is required"))?;
    let value = num("value").ok_or_else(|| bad(format!("{at}.value"), "a number is required"))?;
    let two = num("valueTwo").unwrap_or(0);
    let op = match v.get("op").and_then(Value::as_str) {
        Some("SCMP_CMP_EQ") => ArgOp::Eq,
        Some("SCMP_CMP_NE") => ArgOp::Ne,
        Some("SCMP_CMP_LT") => ArgOp::Lt,
        Some("SCMP_CMP_LE") => ArgOp::Le,
        Some("SCMP_CMP_GT") => ArgOp::Gt,
        Some("SCMP_CMP_GE") => ArgOp::Ge,
        Some("SCMP_CMP_MASKED_EQ") => ArgOp::MaskedEq,
        other => {
            return Err(bad(
                format!("{at}.op"),
                format!("unknown comparison {other:?}"),
            ))
        }
    };
    Ok(match op {
        ArgOp::MaskedEq => ArgCmp {
            index,
            op,
            value: two,
            mask: Some(value),
        },
        _ => ArgCmp {
            index,
            op,
            value,
            mask: None,
        },
    })
}

/// Reads an OCI `linux.seccomp` object back into a policy (rule indices are
/// all 0: OCI JSON does not record which profile rule an entry came from).
pub fn from_oci(v: &Value) -> Result<SeccompPolicy, SeccompError> {
    let default = parse_action(
        v.get("defaultAction")
            .ok_or_else(|| bad("defaultAction", "missing"))?,
        v.get("defaultErrnoRet"),
        "defaultAction",
    )?;
    if let Some(archs) = v.get("architectures") {
        let archs = archs
            .as_array()
            .ok_or_else(|| bad("architectures", "an array is required"))?;
        for (i, a) in archs.iter().enumerate() {
            if a.as_str() != Some("SCMP_ARCH_X86_64") {
                return Err(bad(
                    format!("architectures[{i}]"),
                    format!("only SCMP_ARCH_X86_64 is supported, not {a}"),
                ));
            }
        }
    }
    let mut entries = Vec::new();
    let empty = Vec::new();
    let calls = match v.get("syscalls") {
        None => &empty,
        Some(s) => s
            .as_array()
            .ok_or_else(|| bad("syscalls", "an array is required"))?,
    };
    for (i, s) in calls.iter().enumerate() {
        let at = format!("syscalls[{i}]");
        let action = parse_action(
            s.get("action")
                .ok_or_else(|| bad(format!("{at}.action"), "missing"))?,
            s.get("errnoRet"),
            &format!("{at}.action"),
        )?;
        let args = match s.get("args").and_then(Value::as_array) {
            Some(a) => a
                .iter()
                .enumerate()
                .map(|(j, a)| parse_arg(a, &format!("{at}.args[{j}]")))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let names = s.get("names").and_then(Value::as_array).ok_or_else(|| {
            bad(
                format!("{at}.names"),
                "an array of syscall names is required",
            )
        })?;
        for (j, n) in names.iter().enumerate() {
            let name = n
                .as_str()
                .ok_or_else(|| bad(format!("{at}.names[{j}]"), "a string is required"))?;
            let number = syscalls::number(name).ok_or_else(|| {
                bad(
                    format!("{at}.names[{j}]"),
                    format!("unknown x86_64 syscall `{name}`"),
                )
            })?;
            entries.push(SeccompEntry {
                syscall: name.to_string(),
                number,
                action,
                args: args.clone(),
                rule_idx: 0,
            });
        }
    }
    entries.sort_by(|a, b| a.syscall.cmp(&b.syscall));
    Ok(SeccompPolicy { default, entries })
}
