//! Lua scripts: `EVALSHA`, and on `NOSCRIPT` the same call as `EVAL`
//! (Redis manual, "Scripting with Lua": `EVALSHA` fails with `NOSCRIPT`
//! when the script is not cached).

use std::fmt;
use std::sync::Arc;

/// A Lua script run on the [`RedisBackend`](super::RedisBackend); cheap to
/// clone.
///
/// Scripts receive their keys in `KEYS` (all under one Cluster hash tag)
/// and read the time of Redis with `redis.call('TIME')`.
#[derive(Clone)]
pub struct Script {
    inner: Arc<Inner>,
}

struct Inner {
    text: Box<str>,
    sha: String,
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("sha1", &self.inner.sha)
            .finish_non_exhaustive()
    }
}

impl Script {
    /// A script of Lua `text`; computes its SHA-1 once.
    pub fn new(text: &str) -> Self {
        let sha = redis::Script::new(text).get_hash().to_owned();
        Self {
            inner: Arc::new(Inner {
                text: text.into(),
                sha,
            }),
        }
    }

    /// The hex SHA-1 of the text, what `EVALSHA` names.
    pub fn sha1(&self) -> &str {
        &self.inner.sha
    }

    /// A call of this script with `keys`; add its `ARGV` with
    /// [`ScriptCall::arg`].
    pub fn call(&self, keys: &[&str]) -> ScriptCall {
        self.call_with_capacity(keys, 4, 80)
    }

    /// [`call`](Self::call) with room for `args` more arguments of
    /// `arg_bytes` bytes in all, built in one buffer.
    pub fn call_with_capacity(&self, keys: &[&str], args: usize, arg_bytes: usize) -> ScriptCall {
        let key_bytes: usize = keys.iter().map(|k| k.len()).sum();
        let mut cmd = redis::Cmd::with_capacity(
            3 + keys.len() + args,
            7 + self.inner.sha.len() + 3 + key_bytes + arg_bytes,
        );
        cmd.arg("EVALSHA")
            .arg(self.inner.sha.as_str())
            .arg(keys.len());
        for key in keys {
            cmd.arg(*key);
        }
        ScriptCall {
            script: self.clone(),
            evalsha: cmd,
        }
    }
}

/// One call of a [`Script`]: its keys and arguments, ready to send with
/// [`RedisBackend::eval`](super::RedisBackend::eval).
pub struct ScriptCall {
    script: Script,
    evalsha: redis::Cmd,
}

impl fmt::Debug for ScriptCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptCall")
            .field("script", &self.script)
            .finish_non_exhaustive()
    }
}

impl ScriptCall {
    /// Appends one `ARGV` value.
    pub fn arg(mut self, arg: impl redis::ToRedisArgs) -> Self {
        self.evalsha.arg(arg);
        self
    }

    /// The `EVALSHA` command as sent.
    pub(crate) fn evalsha(&self) -> &redis::Cmd {
        &self.evalsha
    }

    /// The same call as `EVAL` with the script's text, which runs it and
    /// caches it in one command: no window between loading and running for
    /// another flush to fall into.
    pub(crate) fn eval(&self) -> redis::Cmd {
        let text = &self.script.inner.text;
        let mut cmd = redis::Cmd::with_capacity(16, text.len() + 128);
        cmd.arg("EVAL").arg(&**text);
        for arg in self.evalsha.args_iter().skip(2) {
            if let redis::Arg::Simple(bytes) = arg {
                cmd.arg(bytes);
            }
        }
        cmd
    }
}
