//! Registry lookups: one Lua script round trip each, on the lookup pool.

use super::*;

fn parse_record(r: Vec<String>) -> Option<ClientInfo> {
    let [id, node, authid, roles, method, protocol, connected_at]: [String; 7] = r.try_into().ok()?;
    Some(ClientInfo {
        session: id.parse().ok()?,
        node,
        authid,
        authroles: serde_json::from_str(&roles).unwrap_or_default(),
        authmethod: match method.as_str() {
            "cookie" => AuthMethod::Cookie,
            "ticket" => AuthMethod::Ticket,
            _ => AuthMethod::Anonymous,
        },
        protocol: crate::wamp::Protocol::from_token(&protocol).map_or("wamp.2.json", crate::wamp::Protocol::token),
        connected_at: connected_at.parse().unwrap_or(0),
    })
}

impl RedisRegistry {
    /// Runs `script` with the prefix and `args` on the lookup pool; failures are summarised in the log.
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        args: &[&str],
    ) -> Result<T, RegistryError> {
        let result = self.query_once(script, args).await;
        match &result {
            Ok(_) => self.failures.succeeded(),
            Err(e) => self.failures.failed(format_args!("lookup: {e}")),
        }
        result
    }

    pub(super) async fn query_once<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        args: &[&str],
    ) -> Result<T, RegistryError> {
        let mut conn = self.lookups.get().await.map_err(|e| RegistryError(e.to_string()))?;
        let mut invocation = script.prepare_invoke();
        // KEYS[1] names the registry's slot (a Redis Cluster routes the script there); ARGV[1] is the prefix.
        invocation.key(self.keys.prefix()).arg(self.keys.prefix());
        for a in args {
            invocation.arg(*a);
        }
        match tokio::time::timeout(ROUND_TRIP_TIMEOUT, invocation.invoke_async::<T>(&mut *conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(RegistryError(e.to_string())),
            Err(_) => Err(RegistryError("timed out".into())),
        }
    }

    pub(super) async fn lookup(&self, args: &[&str]) -> Result<Vec<ClientInfo>, RegistryError> {
        let records: Vec<Vec<String>> = self.query(&self.lookup_script, args).await?;
        Ok(records.into_iter().filter_map(parse_record).collect())
    }

    /// How many live sessions there are, or how many hold one of `roles`, without reading any session.
    pub async fn count(&self, roles: Option<&[String]>) -> Result<usize, RegistryError> {
        let mut args = vec![if roles.is_some() { "roles" } else { "all" }];
        args.extend(roles.unwrap_or_default().iter().map(String::as_str));
        let n: i64 = self.query(&self.count_script, &args).await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Up to `limit` live session ids above `after`, in id order, optionally only those holding one of `roles`.
    pub async fn page(&self, roles: Option<&[String]>, after: Id, limit: usize) -> Result<Vec<Id>, RegistryError> {
        let (after, limit) = (after.to_string(), limit.to_string());
        let mut args = vec![after.as_str(), limit.as_str(), if roles.is_some() { "roles" } else { "all" }];
        args.extend(roles.unwrap_or_default().iter().map(String::as_str));
        let ids: Vec<String> = self.query(&self.page_script, &args).await?;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }

    /// One session.
    pub async fn get_client(&self, session: Id) -> Result<Option<ClientInfo>, RegistryError> {
        Ok(self.lookup(&["one", &session.to_string()]).await?.into_iter().next())
    }

    /// Every session of `username` on every node.
    pub async fn find_all_by_username(&self, username: &str) -> Result<Vec<ClientInfo>, RegistryError> {
        self.lookup(&["set", &format!("u:{username}")]).await
    }

    /// Sessions of `username` subscribed to `topic`, on every node.
    pub async fn find_by_username(&self, topic: &str, username: &str) -> Result<Vec<ClientInfo>, RegistryError> {
        self.lookup(&["inter", &format!("ts:{topic}"), &format!("u:{username}")]).await
    }

    /// Sessions holding any of `roles`.
    pub async fn find_by_roles(&self, roles: &[&str]) -> Result<Vec<ClientInfo>, RegistryError> {
        if roles.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = roles.iter().map(|r| format!("r:{r}")).collect();
        let mut args = vec!["union"];
        args.extend(keys.iter().map(String::as_str));
        self.lookup(&args).await
    }

    /// Every session.
    pub async fn get_all(&self) -> Result<Vec<ClientInfo>, RegistryError> {
        self.lookup(&["zset", "ids"]).await
    }

    /// Runs one plain command on the lookup pool.
    pub(super) async fn command<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, RegistryError> {
        let mut conn = self.lookups.get().await.map_err(|e| RegistryError(e.to_string()))?;
        let result = match tokio::time::timeout(ROUND_TRIP_TIMEOUT, cmd.query_async::<T>(&mut *conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(RegistryError(e.to_string())),
            Err(_) => Err(RegistryError("timed out".into())),
        };
        match &result {
            Ok(_) => self.failures.succeeded(),
            Err(e) => self.failures.failed(format_args!("lookup: {e}")),
        }
        result
    }

    /// Every subscription in the table (one `HGETALL`: O(subscriptions), for the meta API only).
    pub async fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>, RegistryError> {
        let all: Vec<(String, String)> = self.command(redis::cmd("HGETALL").arg(self.p("subs")).clone()).await?;
        Ok(all.iter().filter_map(|(id, entry)| subscription_entry(id.parse().ok()?, entry)).collect())
    }

    /// One subscription.
    pub async fn subscription(&self, id: Id) -> Result<Option<SubscriptionInfo>, RegistryError> {
        let entry: Option<String> = self.command(redis::cmd("HGET").arg(self.p("subs")).arg(id).clone()).await?;
        Ok(entry.and_then(|entry| subscription_entry(id, &entry)))
    }

    /// The live subscribers of a subscription.
    pub async fn subscribers(&self, id: Id) -> Result<Vec<Id>, RegistryError> {
        let ids: Vec<String> = self.query(&self.subscribers_script, &[&id.to_string()]).await?;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }
}

/// A `subs` table entry (`<created ms> <record>`) of subscription `id`.
fn subscription_entry(id: Id, entry: &str) -> Option<SubscriptionInfo> {
    let (created, record) = entry.split_once(' ')?;
    Some(SubscriptionInfo { id, key: crate::model::TopicKey::from_record(record), created_ms: created.parse().ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_entries_parse() {
        let got = subscription_entry(9, "1700000000000 prefix chat.").unwrap();
        assert_eq!(
            (got.id, &*got.key.uri, got.key.policy.as_str(), got.created_ms),
            (9, "chat.", "prefix", 1_700_000_000_000)
        );
        assert_eq!(subscription_entry(9, "1 a b c").unwrap().key.uri.as_ref(), "a b c", "an exact URI is the rest");
        assert!(subscription_entry(9, "garbage").is_none());
    }

    #[test]
    fn records_parse_into_client_info() {
        let r = vec!["42", "node-a", "alice", r#"["admin","user"]"#, "cookie", "wamp", "1700000000"];
        let c = parse_record(r.into_iter().map(String::from).collect()).unwrap();
        assert_eq!((c.session, c.node.as_str(), c.authid.as_str()), (42, "node-a", "alice"));
        assert_eq!(c.authroles, vec!["admin", "user"]);
        assert_eq!((c.authmethod, c.protocol), (AuthMethod::Cookie, "wamp"));
        assert!(parse_record(vec!["x".into()]).is_none());
    }
}
