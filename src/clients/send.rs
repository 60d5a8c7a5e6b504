//! Sending: publications from the library and the push API (to everyone, to a user), confirmed sends with their
//! delivery result, and what a message to a user leaves in her offline inbox.

use super::*;

impl ClientManipulator {
    /// Publishes `payload` on `topic` from the server, with Gos-style session-id filters. Returns the
    /// publication id.
    pub fn broadcast(&self, topic: &str, payload: Payload, exclude: Vec<Id>, eligible: Option<Vec<Id>>) -> Id {
        self.publish(topic, payload, Filters { exclude, eligible, ..Filters::default() })
    }

    /// Publishes `payload` on `topic` to the sessions of `username` only, on every node. With `[inbox]`, it is
    /// also kept for her until a socket of hers takes it (then handed over once kept).
    pub fn send_to_user(&self, username: &str, topic: &str, payload: Payload) -> Id {
        let filters = Filters { eligible_authid: Some(vec![username.to_owned()]), ..Filters::default() };
        let Some((store, settings)) = self.inbox.clone() else { return self.publish(topic, payload, filters) };
        let mut publication = Publication::new(topic.to_owned(), payload, filters);
        let id = publication.id;
        publication.inboxed = true;
        self.attach_sink(&publication, true);
        // Through the index actor, so this may be called from any thread (a plain spawn needs an actix one).
        self.index.do_send(actor::KeepAndPublish { authid: username.to_owned(), publication, store, settings });
        id
    }

    /// Lets this node's topics report who took `publication` (receipts, inbox removal), if anyone needs to know.
    fn attach_sink(&self, publication: &Publication, local: bool) {
        let inbox = self.inbox.as_ref().map(|(store, _)| store);
        if let Some(sink) = receipts::sink(&self.receipts, inbox, publication, local) {
            publication.set_receipt_sink(sink);
        }
    }

    /// Whether `[inbox]` keeps messages for users.
    pub(crate) fn inbox_enabled(&self) -> bool {
        self.inbox.is_some()
    }

    /// Takes the messages kept for `authid` on `topic`, oldest first (each is given to one caller only).
    pub(crate) async fn take_inbox(&self, authid: &str, topic: &str) -> Result<Vec<Publication>, RegistryError> {
        match &self.inbox {
            Some((store, settings)) => store.take(authid, topic, settings).await,
            None => Ok(Vec::new()),
        }
    }

    /// Sends `payload` on `topic` to the sessions of `username`, on every node, and reports how many of her
    /// sockets took it within `wait` (on how many nodes): receipts come back from every node that delivered it.
    /// The error says the message could not be handed to the other nodes (it was still delivered here).
    pub async fn send_to_user_confirmed(
        &self,
        username: &str,
        topic: &str,
        payload: Payload,
        wait: Duration,
    ) -> Result<(Id, Tally), BackplaneError> {
        let filters = Filters { eligible_authid: Some(vec![username.to_owned()]), ..Filters::default() };
        let mut publication = Publication::new(topic.to_owned(), payload, filters);
        let id = publication.id;
        self.receipts.expect(&mut publication);
        let mut stored = false;
        if let Some((store, settings)) = &self.inbox {
            publication.inboxed = true;
            match store.put(username, &publication, settings).await {
                Ok(()) => stored = true,
                Err(e) => log::warn!("message {id} for {} not kept: {e}", crate::logfmt::Escaped(username)),
            }
        }
        self.attach_sink(&publication, true);
        let handed = match self.broker.send(Publish(Arc::new(publication))).await {
            Ok(result) => result,
            Err(e) => Err(BackplaneError::Publish(format!("broker unavailable: {e}"))),
        };
        if handed.is_ok() && !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let mut tally = self.receipts.finish(id);
        tally.stored = stored;
        handed.map(|()| (id, tally))
    }

    /// Counts a receipt from another node (see [`send_to_user_confirmed`](Self::send_to_user_confirmed)).
    pub(crate) fn receipt(&self, publication: Id, node: &str, sockets: u64) {
        self.receipts.record(publication, node, sockets);
    }

    /// Prepares a publication from another node: one that wants a receipt reports this node's deliveries back,
    /// one kept in an inbox is removed there once a socket here takes it.
    pub(crate) fn received(&self, publication: &Publication) {
        self.attach_sink(publication, false);
    }

    /// Publishes with arbitrary filters (fire and forget; failures to reach other nodes are counted and
    /// logged). Returns the publication id.
    pub fn publish(&self, topic: &str, payload: Payload, filters: Filters) -> Id {
        let publication = Publication::new(topic.to_owned(), payload, filters);
        let id = publication.id;
        self.broker.do_send(Publish(Arc::new(publication)));
        id
    }

    /// Records `session`'s testaments (JSON) where a surviving node finds them if this node dies.
    pub(crate) fn set_testaments(&self, session: Id, testaments: Vec<String>) {
        self.registry.write(crate::cluster::Write::Testaments(session, testaments));
    }

    /// Publishes a publication the router makes for a session (a testament), counted like any other.
    pub(crate) fn publish_prepared(&self, publication: Publication) {
        self.broker.do_send(Publish(Arc::new(publication)));
    }

    /// Publishes and waits until the publication is delivered locally and handed to the other nodes.
    pub async fn publish_confirmed(
        &self,
        topic: &str,
        payload: Payload,
        filters: Filters,
    ) -> Result<Id, BackplaneError> {
        let publication = Publication::new(topic.to_owned(), payload, filters);
        let id = publication.id;
        match self.broker.send(Publish(Arc::new(publication))).await {
            Ok(result) => result.map(|()| id),
            Err(e) => Err(BackplaneError::Publish(format!("broker unavailable: {e}"))),
        }
    }
}
