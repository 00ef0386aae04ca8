//! Reason classification: diagnostic text + status code + DSN action → [`Reason`].
//!
//! Input is what a bounce says about one recipient (the `Diagnostic-Code` or the lines
//! a non-standard bounce writes next to the address), its enhanced status code and its
//! action; output is one of Sisimai's reason names. Hard versus soft is *not* decided
//! here: [`BounceClass::derive`](crate::verdict::BounceClass::derive) does that from the
//! kind, this reason and the status.
//!
//! # The rule table
//!
//! The text is lower-cased and whitespace-collapsed, then the rules below are tried in
//! order; the first phrase found decides. The order is deliberate: rejections of the
//! *sender* (its IP, its reputation, its authentication, its content) come before the
//! recipient-level reasons, so a policy or spam rejection is never read as
//! `user-unknown` just because it also says "recipient rejected".
//!
//! | # | reason | phrases (any of, abridged) |
//! |---|---|---|
//! | 1 | mailbox-full | mailbox full, over quota, quota exceeded, exceeded storage allocation, mailbox size limit |
//! | 2 | mesg-too-big | message too large/big, message size exceeds, exceeds maximum message size |
//! | 3 | has-moved | has moved, address has been replaced, no longer at this address |
//! | 4 | no-relaying | relay access denied, relaying denied, unable to relay, not permitted to relay, insecure mail relay, identities failed the check (an unverified sending identity) |
//! | 5 | auth-failure | spf, dkim, dmarc, sender policy framework, unauthenticated email |
//! | 6 | require-ptr | reverse dns, ptr record, cannot resolve your hostname, rdns, unverifiable sending IPs |
//! | 7 | bad-reputation | reputation |
//! | 8 | blocked | blacklist, blocklist, dnsbl, rbl, spamhaus, spamcop, your ip/client host blocked, dynamic ip, use the smtp server of your isp, not accepting connections |
//! | 9 | virus-detected | virus, malware, infected |
//! | 10 | spam-detected | spam (as a word), junk mail, unsolicited, bulk mail |
//! | 11 | security-error / failed-starttls | must issue a starttls, tls required, authentication required, starttls failed |
//! | 12 | rejected | sender address rejected, sender rejected, sender verify failed, domain of sender, mail from rejected, unroutable sender, 'send mail as', purported responsible address, not a registered gateway user |
//! | 13 | host-unknown | host/domain not found, no such domain, domain does not exist, unrouteable address, nxdomain, dns lookup failure: host … not found (not bare "unknown host": joined lines "…User Unknown" + "host mx…" would match) |
//! | 14 | not-accept | does not accept mail, null mx, accepts no mail |
//! | 15 | suspend | account disabled/suspended/inactive/expired, mailbox disabled |
//! | 16 | user-unknown | user unknown, unknown user, no such user/mailbox, user not found, user not exist, mailbox not found/unavailable, address does not exist, invalid recipient, destinataire invalide, invalid final delivery userid, recipient unknown |
//! | 17 | filtered | filtered (also "message filtered"), refused by recipient's rules, only accepting mail from, recipient preferences, was rejected by a remote mail server |
//! | 18 | speeding / exceed-limit / too-many-conn | recipients this hour, per hour (a rate, tried first); too many recipients, too many connections, rate limit, sending too fast |
//! | 19 | expired | delivery time expired, retry timeout exceeded, message expired, could not be delivered for N days |
//! | 20 | network-error | connection refused/timed out, no route to host, mail loop, too many hops |
//! | 21 | system-full / system-error / mailer-error | insufficient system storage, internal/system error, command failed, exit code (not the bare "temporary failure" or "service unavailable", which sendmail appends to any refusal) |
//! | 22 | syntax-error / not-compliant-rfc / content-error | syntax error, malformed address, rfc 5322, headers, attachment type, mime (as a word) |
//! | 23 | policy-violation | policy (as a last resort) |
//!
//! A phrase match is then checked against the evidence around it ([`confirm`]):
//!
//! | evidence | effect |
//! |---|---|
//! | the refusal answered `MAIL FROM` ([`Stage`]) | a recipient-level reason becomes `rejected` |
//! | host-unknown answering `DATA` | `rejected` (the sender's domain was judged) |
//! | user-unknown with an x.1.x status, or answering `RCPT TO` with no specific status | stays `user-unknown` |
//! | user-unknown with x.1.6 | `has-moved` |
//! | an [`UNAMBIGUOUS_USER_UNKNOWN`] phrase with no specific status (none or x.y.0), even answering `DATA` | stays `user-unknown` |
//! | user-unknown answering `DATA`, or with any other specific status (5.2.x, 5.7.x, …) | `filtered` |
//! | user-unknown with no status (or x.0.0) and no stage | `filtered`: not certain |
//! | `X-Unix;` diagnostic (a local delivery program) | `mailer-error` (`mailbox-full` if it says so) |
//! | mesg-too-big with status x.2.3 | `exceed-limit` |
//!
//! When no phrase matches, the enhanced status code decides ([`from_status`]):
//!
//! | status | reason |
//! |---|---|
//! | x.1.1, x.1.3, x.1.4 | user-unknown (only with class 5; a 4.1.1 stays soft anyway) |
//! | x.1.2 | host-unknown |
//! | x.1.6 | has-moved |
//! | x.1.7, x.1.8 | rejected (the sender's address) |
//! | x.1.10 | not-accept (null MX) |
//! | x.2.1 | suspend |
//! | x.2.2 | mailbox-full |
//! | x.2.3, x.3.4 | mesg-too-big / exceed-limit |
//! | x.3.1 | system-full |
//! | x.3.x | system-error |
//! | x.4.7 | expired |
//! | 5.4.4 | host-unknown (unable to route) |
//! | x.4.x | network-error |
//! | x.5.x | syntax-error |
//! | x.6.x | content-error |
//! | x.7.1 | rejected |
//! | x.7.13 | suspend |
//! | x.7.23–x.7.26 | auth-failure (x.7.25: require-ptr) |
//! | x.7.27 | not-accept |
//! | x.7.x | security-error |
//!
//! Then the action: `delivered`/`relayed`/`expanded` is `delivered`; `delayed` is
//! `expired`. Otherwise the reason is `undefined` (or `on-hold` for a temporary failure).
//!
//! # The hard/soft rule
//!
//! Hard only when the message is a bounce, the status is permanent (5.x.x), the recipient
//! is not merely delayed, **and** the reason is user-unknown, host-unknown, has-moved or
//! not-accept. Everything else that
//! failed — full mailboxes, policy, spam and reputation rejections, network trouble,
//! and anything undetermined — is soft: the recipient still exists.

use crate::verdict::Reason;

/// One rule: a reason and the lower-case phrases that select it.
#[derive(Debug)]
pub struct Rule {
    /// The reason this rule gives.
    pub reason: Reason,
    /// Lower-case phrases; any one of them selects the reason.
    pub phrases: &'static [&'static str],
}

/// The phrase rules, in the order they are tried.
pub static RULES: &[Rule] = &[
    Rule {
        reason: Reason::MailboxFull,
        phrases: &[
            "mailbox full",
            "mailbox is full",
            "mailbox was full",
            "mail box full",
            "mailbox has exceeded",
            "mailbox exceeded",
            "over quota",
            "overquota",
            "quota exceeded",
            "exceeded quota",
            "exceeds quota",
            "quota exceed",
            "over its quota",
            "over the quota",
            "exceed the quota",
            "exceeds the quota",
            "exceeded storage allocation",
            "exceeded the storage",
            "mailbox size limit",
            "mailbox is over",
            "disk quota",
            "user is over",
            "would exceed mailbox",
            "mailbox would exceed",
            "full mailbox",
            "mailbox size exceed",
            "the user's mailbox is full",
            "insufficient storage for the user",
            "inbox is full",
            "account is full",
            "storage is full",
            "mailfolder is full",
            "is over quota",
            "has exceeded its",
            "mailbox quota",
            "not enough space in mailbox",
            "exceeded the quota",
            "recipient's mailbox is full",
            "mailbox is currently full",
            "quota full",
            "quota limit",
            "out of storage",
            "mailbox over",
            "user over quota",
            "4.2.2 mailbox",
            "mailbox exceeds",
            "disk quota exceeded",
        ],
    },
    Rule {
        reason: Reason::MesgTooBig,
        phrases: &[
            "message too large",
            "message too big",
            "message size",
            "message is too large",
            "message is too big",
            "message size exceeds",
            "exceeds maximum message size",
            "exceeds the maximum message size",
            "message exceeds",
            "message length exceeds",
            "message size limit",
            "size of message exceeds",
            "mail size limit",
            "is larger than",
            "message larger than",
            "too large for",
            "exceeded maximum size",
            "maximum message size",
            "message file too big",
            "message is larger",
        ],
    },
    Rule {
        reason: Reason::HasMoved,
        phrases: &[
            "has moved",
            "address has been replaced",
            "has been replaced by",
            "no longer at this address",
            "user moved",
            "address changed",
            "address has changed",
            "moved permanently",
        ],
    },
    Rule {
        reason: Reason::NoRelaying,
        phrases: &[
            "relay access denied",
            "relaying denied",
            "relay denied",
            "unable to relay",
            "not permitted to relay",
            "relay not permitted",
            "relaying not allowed",
            "relay not allowed",
            "we do not relay",
            "relaying mail to",
            "relaying is prohibited",
            "no relaying",
            "not allowed to relay",
            "cannot relay",
            "relay prohibited",
            "is not a gateway",
            "open relay",
            "relay rejected",
            "relaying disallowed",
            "does not relay",
            "not a relay",
            "not configured to relay",
            "relay mail for",
            "identities failed the check",
            "insecure mail relay",
        ],
    },
    Rule {
        reason: Reason::NotCompliantRfc,
        phrases: &[
            "rfc 5322",
            "rfc5322",
            "rfc 2822",
            "rfc2822",
            "not rfc",
            "addresses in from",
            "multiple subject",
            "multiple from",
        ],
    },
    Rule {
        reason: Reason::SpamDetected,
        phrases: &[
            "due to spam",
            "rejected as spam",
            "spam classification",
            "detected as spam",
            "classified as spam",
            "considered spam",
            "considered as spam",
        ],
    },
    Rule {
        reason: Reason::PolicyViolation,
        phrases: &[
            "for policy reasons",
            "policy reasons",
            "content presents a potential",
        ],
    },
    Rule {
        // "not listed in … directory" is a directory's user-unknown, not a blocklist.
        reason: Reason::UserUnknown,
        phrases: &[
            "not listed in domino directory",
            "not listed in the directory",
            "not listed in public name",
        ],
    },
    Rule {
        reason: Reason::Suspend,
        phrases: &[
            "account is blocked",
            "temporary locked",
            "temporarily locked",
            "account is locked",
            "account has been locked",
        ],
    },
    Rule {
        // A mailing list (group) refused the post: the sender may not post to it.
        reason: Reason::Rejected,
        phrases: &[
            "permission to post",
            "not have permission to post",
            "not allowed to post",
        ],
    },
    Rule {
        reason: Reason::AuthFailure,
        phrases: &[
            "spf",
            "dkim",
            "dmarc",
            "sender policy framework",
            "unauthenticated email",
            "not pass authentication",
            "authentication checks",
            "failed authentication",
            "sender authentication failed",
            "sender is unauthenticated",
        ],
    },
    Rule {
        reason: Reason::RequirePtr,
        phrases: &[
            "reverse dns",
            "reverse-dns",
            "ptr record",
            "no ptr",
            "rdns",
            "reverse lookup",
            "reverse address",
            "cannot resolve your",
            "cannot find your hostname",
            "can't resolve your",
            "could not resolve your",
            "unresolvable",
            "no reverse",
            "reverse dns lookup",
            "your hostname",
            "ip name lookup failed",
            "client host name",
            "hostname does not match",
            "not have a reverse",
            "dns ptr",
            "unable to resolve your",
            "host name lookup failed",
            "cannot find your reverse",
            "no rdns",
            "unverifyable sending",
            "unverifiable sending",
        ],
    },
    Rule {
        reason: Reason::BadReputation,
        phrases: &["reputation", "user complaints", "unexpected volume"],
    },
    Rule {
        reason: Reason::Blocked,
        phrases: &[
            "blacklist",
            "black list",
            "blocklist",
            "block list",
            "blacklisted",
            "blocklisted",
            "dnsbl",
            "rbl",
            "spamhaus",
            "spamcop",
            "sorbs",
            "barracuda",
            "cbl.abuseat",
            "abuseat.org",
            "uceprotect",
            "listed at",
            "listed on",
            "listed in",
            "your ip",
            "your ip address",
            "client host rejected",
            "client host [",
            "host blocked",
            "ip blocked",
            "ip address blocked",
            "is blocked",
            "been blocked",
            "are blocked",
            "temporarily blocked",
            "blocked by",
            "blocked using",
            "blocked for",
            "blocked because",
            "connection refused by",
            "access denied - invalid",
            "dynamic ip",
            "dynamic-ip",
            "dialup",
            "dial-up",
            "residential",
            "use the smtp server of your isp",
            "smtp server of your isp",
            "not allowed to send mail from",
            "mail from your ip",
            "your server",
            "your network",
            "your host",
            "your mail server",
            "sending mta",
            "sending host",
            "poor ip",
            "banned",
            "bad ip",
            "rejected due to",
            "connections from",
            "connection rejected",
            "connections not accepted",
            "refused to talk",
            "service not available, closing",
            "network is blocked",
            "has been temporarily rate",
            "access denied. ip",
            "low sender",
            "not accepting mail from this ip",
            "mail server at",
            "not accepting connections",
        ],
    },
    Rule {
        reason: Reason::VirusDetected,
        phrases: &["virus", "malware", "infected", "trojan", "worm"],
    },
    Rule {
        reason: Reason::SpamDetected,
        phrases: &[
            " spam",
            "spam ",
            "spam.",
            "spam,",
            "spam;",
            "(spam",
            "spam)",
            "spam-",
            "spamassassin",
            "junk mail",
            "junkmail",
            "unsolicited",
            "bulk mail",
            "bulk e-mail",
            "bulk email",
            "looks like spam",
            "considered spam",
            "classified as spam",
            "detected as spam",
            "probable spam",
            "suspected spam",
            "spam score",
            "spamscore",
            "content filter rejection",
            "message content rejected",
            "likely suspicious",
            "suspicious",
            "scam",
            "phishing",
            "rejected by the content filter",
        ],
    },
    Rule {
        reason: Reason::FailedStarttls,
        phrases: &[
            "does not support tls",
            "doesn't support tls",
            "starttls failed",
            "tls negotiation failed",
            "failed to establish tls",
            "tls handshake failed",
            "starttls error",
        ],
    },
    Rule {
        reason: Reason::SecurityError,
        phrases: &[
            "must issue a starttls",
            "tls required",
            "requires tls",
            "encryption required",
            "must use tls",
            "authentication required",
            "must authenticate",
            "not authenticated",
            "authentication is required",
            "smtp authentication",
            "smtp auth",
            "insecure",
            "certificate",
            "unauthenticated sender",
            "sender address has null mx",
            "secure connection",
            "security policy",
            "message not authorized",
            "5.7.4",
            "5.7.5",
            "5.7.6",
            "5.7.7",
            "5.7.8",
            "authentication failed",
        ],
    },
    Rule {
        reason: Reason::Rejected,
        phrases: &[
            "sender address rejected",
            "sender rejected",
            "sender was rejected",
            "sender is rejected",
            "sender denied",
            "sender verify failed",
            "sender verification failed",
            "verify sender",
            "unverified sender",
            "sender not allowed",
            "sender address is not allowed",
            "domain of sender address",
            "sender domain",
            "envelope sender",
            "mail from address",
            "mail from rejected",
            "sender address invalid",
            "invalid sender",
            "bad sender",
            "sender is not allowed",
            "senders are not allowed",
            "your address is not allowed",
            "sender unknown",
            "unknown sender",
            "sender address domain",
            "return path",
            "return-path",
            "sender address blocked",
            "sender blocked",
            "sender rejected",
            "sender mismatch",
            "from address",
            "address rejected: domain not found",
            "not allowed to send",
            "you are not allowed",
            "refused to accept your mail",
            "no such sender",
            "access denied",
            "not authorized to send",
            "not permitted to send",
            "domain not allowed",
            "unroutable sender",
            "unrouteable sender",
            "do not accept mail from",
            "does not accept mail from",
            "not accept mail from",
            "send mail as",
            "purported responsible address",
            "not a registered gateway user",
        ],
    },
    Rule {
        reason: Reason::NetworkError,
        phrases: &[
            "host not found, try again",
            "temporary failure in name resolution",
            "temporary lookup failure",
            "dns temporary failure",
        ],
    },
    Rule {
        reason: Reason::NotAccept,
        phrases: &[
            "does not accept mail",
            "doesn't accept mail",
            "not accept any mail",
            "accepts no mail",
            "null mx",
            "not accepting mail",
            "no mail accepted",
            "does not receive mail",
            "not receiving mail",
            "domain does not accept",
            "host does not accept",
            "doesn't receive email",
            "does not receive email",
            "couldn't find a mail exchanger",
            "no mail exchanger",
        ],
    },
    Rule {
        reason: Reason::HostUnknown,
        phrases: &[
            "host unknown",
            // Not bare "unknown host": joined transcript lines ("... User Unknown" + "host
            // mx.example.jp [...]") would read as one.
            "unknown host name",
            "unknown hostname",
            "bad destination system address",
            "host not found",
            "domain not found",
            "no such domain",
            "domain does not exist",
            "domain doesn't exist",
            "domain is not reachable",
            "domain must exist",
            "domain name not found",
            "host or domain name not found",
            "unrouteable address",
            "unroutable address",
            "unrouteable mail domain",
            "unroutable mail domain",
            "nxdomain",
            "name or service not known",
            "unknown domain",
            "invalid domain",
            "no mx",
            "mx record",
            "no dns",
            "dns error",
            "domain lookup failed",
            "domain is invalid",
            "domain not exist",
            "host or domain",
            "non-existent domain",
            "nonexistent domain",
            "not a valid domain",
            "domain invalid",
            "domain unknown",
            "recipient domain must exist",
            "no such host",
            "unknown recipient domain",
            "hostname not found",
            "could not be found in dns",
            "domain could not be",
            "dns lookup failure: host",
        ],
    },
    Rule {
        reason: Reason::Suspend,
        phrases: &[
            "account disabled",
            "account has been disabled",
            "account is disabled",
            "account has been suspended",
            "account is suspended",
            "account suspended",
            "account inactive",
            "account is inactive",
            "account has expired",
            "account expired",
            "mailbox disabled",
            "mailbox is disabled",
            "mailbox has been disabled",
            "mailbox is inactive",
            "mailbox inactive",
            "mailbox suspended",
            "has been suspended",
            "is suspended",
            "temporarily disabled",
            "disabled mailbox",
            "inactive account",
            "account is locked",
            "account locked",
            "account has been locked",
            "user suspended",
            "is deactivated",
            "has been deactivated",
            "deactivated",
            "disabled recipient",
            "recipient is disabled",
            "not active",
            "account closed",
            "account has been closed",
            "mailbox is frozen",
            "mailbox closed",
            "service suspended",
            "suspended",
            "disabled",
            "inactive",
        ],
    },
    Rule {
        reason: Reason::UserUnknown,
        phrases: &[
            "user unknown",
            "unknown user",
            "no such user",
            "user not found",
            "user doesn't exist",
            "user does not exist",
            "unknown local part",
            "unknown local-part",
            "no such mailbox",
            "no mailbox",
            "mailbox not found",
            "mailbox does not exist",
            "mailbox doesn't exist",
            "mailbox name not allowed",
            "invalid mailbox",
            "not a valid mailbox",
            "address does not exist",
            "address doesn't exist",
            "account does not exist",
            "account doesn't exist",
            "email account that you tried to reach does not exist",
            "does not exist",
            "doesn't exist",
            "invalid recipient",
            "recipient unknown",
            "unknown recipient",
            "recipient not found",
            "recipient does not exist",
            "no such recipient",
            "no such address",
            "address unknown",
            "unknown address",
            "addressee unknown",
            "no such person",
            "no such account",
            "not our customer",
            "bad destination mailbox",
            "user invalid",
            "invalid user",
            "no valid recipients",
            "not a valid recipient",
            "no account by that name",
            "is not a known user",
            "unknown or illegal alias",
            "unknown alias",
            "no such local user",
            "user is unknown",
            "unknown e-mail address",
            "address not found",
            "no longer valid",
            "no longer exists",
            "recipient invalid",
            "unknown mailbox",
            "user doesn't have",
            "user does not have",
            "no mailbox here by that name",
            "recipient name is not recognized",
            "address couldn't be found",
            "address could not be found",
            "address rejected.",
            "user not exist",
            "destinataire invalide",
            "invalid final delivery userid",
        ],
    },
    Rule {
        reason: Reason::Filtered,
        phrases: &[
            "filtered",
            "recipient's rules",
            "recipients rules",
            "only accepting mail from",
            "only accepts mail from",
            "recipient preferences",
            "was rejected by a remote mail server",
            "refused by recipient",
            "rejected by recipient",
            "rejected by the recipient",
            "user refuses",
            "refuses to accept",
            "does not want",
            "not want to receive",
            "allowed list",
            "whitelist",
            "permission denied",
            "not permitted",
            "is not allowed",
            "restricted",
            "you do not have permission",
        ],
    },
    Rule {
        reason: Reason::OnHold,
        phrases: &["on hold", "held for", "quarantined"],
    },
    Rule {
        // A count per unit of time is a sending rate, not a size or count limit.
        reason: Reason::Speeding,
        phrases: &["recipients this hour", "messages this hour", "per hour"],
    },
    Rule {
        reason: Reason::ExceedLimit,
        phrases: &[
            "too many recipients",
            "recipient limit",
            "exceeded the limit",
            "limit exceeded",
            "exceeds the limit",
            "exceeded limit",
        ],
    },
    Rule {
        reason: Reason::TooManyConn,
        phrases: &[
            "frequency limited",
            "too many connections",
            "too many concurrent",
            "connection limit",
            "too many smtp sessions",
            "too many simultaneous",
            "too many sessions",
        ],
    },
    Rule {
        reason: Reason::Speeding,
        phrases: &[
            "rate limit",
            "ratelimit",
            "sending too fast",
            "too many messages",
            "try again slower",
            "rate that prevents",
            "throttl",
            "too fast",
        ],
    },
    Rule {
        reason: Reason::Expired,
        phrases: &[
            "delivery time expired",
            "retry timeout exceeded",
            "retry time exceeded",
            "message expired",
            "has expired",
            "expired",
            "giving up",
            "gave up",
            "given up",
            "could not be delivered for",
            "could not send message for",
            "cannot send message for",
            "undeliverable for",
            "timeout exceeded",
            "time limit exceeded",
            "queue too long",
            "too long in queue",
            "retry period",
            "no further attempts",
            "was not delivered within",
            "could not be delivered within",
            "have not been able to deliver",
            "could not deliver for",
            "delivery expired",
            "maximum time",
            "delivery delayed",
            "will keep trying",
            "still trying",
            "being retried",
            "will be retried",
            "retried for",
            "failing for a long time",
            "retry time not reached",
            "delayed",
            "delay",
            "connection timed out",
            "connect timed out",
            "timed out",
            "requests to connect",
            "not reachable",
            "could not find a gateway",
            "delivery attempts",
            "failed 20 attempts",
            " attempts:",
        ],
    },
    Rule {
        reason: Reason::NetworkError,
        phrases: &[
            "connection refused",
            "no route to host",
            "network is unreachable",
            "host unreachable",
            "could not connect",
            "unable to connect",
            "can't connect",
            "cannot connect",
            "failed to connect",
            "lost connection",
            "connection reset",
            "connection dropped",
            "connection closed",
            "mail loop",
            "loop detected",
            "routing loop",
            "too many hops",
            "hop count exceeded",
            "loops back to myself",
            "temporary lookup failure",
            "dns lookup",
            "name server",
            "nameserver",
            "malformed or unexpected name server reply",
            "lookup failed",
            "dns failure",
            "network error",
            "unreachable",
        ],
    },
    Rule {
        reason: Reason::SystemFull,
        phrases: &[
            "not enough disk space",
            "disk space",
            "insufficient system storage",
            "system storage",
            "disk full",
            "out of disk space",
            "no space left",
            "mail system full",
            "disk is full",
            "insufficient disk space",
        ],
    },
    Rule {
        reason: Reason::MailerError,
        phrases: &[
            "mailer error",
            "command failed",
            "x-unix",
            "exit code",
            "exited with",
            "pipe to",
            "procmail",
            "unknown mailer",
            "command not found",
            "local delivery failed",
            "error in processing",
            "program failed",
            "child process",
        ],
    },
    Rule {
        reason: Reason::SystemError,
        phrases: &[
            "system error",
            "internal error",
            "server error",
            "local error",
            "temporary error",
            "temporarily unavailable",
            "try again later",
            "i/o error",
            "configuration error",
            "misconfigured",
            "mail system error",
            "service currently unavailable",
            "service not available",
            "resources temporarily",
            "system problem",
            "internal server",
            "unexpected error",
            "processing error",
            "server is busy",
            "server busy",
            "system busy",
            "system failure",
            "database error",
            "requested action aborted",
            "error in processing",
            "internal failure",
            "could not load",
            "ldap server",
            "unable to contact ldap",
        ],
    },
    Rule {
        reason: Reason::SyntaxError,
        phrases: &[
            "syntax error",
            "not implemented",
            "command parameter",
            "command unrecognized",
            "unrecognized command",
            "command not recognized",
            "bad sequence of commands",
            "invalid command",
            "malformed address",
        ],
    },
    Rule {
        reason: Reason::NotCompliantRfc,
        phrases: &[
            "rfc 5322",
            "rfc5322",
            "rfc 2822",
            "rfc2822",
            "rfc 822",
            "rfc822 ",
            "not compliant",
            "non-compliant",
            "duplicate header",
            "header error",
            "invalid header",
            "missing header",
            "bad header",
            "header field",
            "header line",
            "malformed",
            "invalid message",
        ],
    },
    Rule {
        reason: Reason::ContentError,
        phrases: &[
            "attachment",
            "content rejected",
            "content type",
            "mime ",
            "mime-",
            "mime.",
            "mime,",
            "prohibited content",
            "banned content",
            "message content",
            "file type",
        ],
    },
    Rule {
        reason: Reason::PolicyViolation,
        phrases: &[
            "policy",
            "policies",
            "prohibited",
            "not allowed",
            "violation",
            "refused",
        ],
    },
];

/// The reason the rule table gives for `text` (any case), if a phrase matches.
///
/// # Examples
/// ```
/// use rebound::detector::reason::from_text;
/// use rebound::verdict::Reason;
/// assert_eq!(from_text("550 5.1.1 <a@example.com>: User unknown"), Some(Reason::UserUnknown));
/// assert_eq!(from_text("554 5.7.1 Service unavailable; client host [192.0.2.1] blocked using zen.spamhaus.org"), Some(Reason::Blocked));
/// ```
pub fn from_text(text: &str) -> Option<Reason> {
    if text.len() < MEMO_MIN || HELD_OUT.with(|h| h.borrow().is_some()) {
        return first_named(&squash(text), |_| true);
    }
    with_squashed(text, |e| {
        *e.named
            .get_or_insert_with(|| first_named(&e.squashed, |_| true))
    })
}

/// The first reason, in table order, that a phrase in `lower` (already squashed) names
/// and `accept` takes.
fn first_named(lower: &str, accept: impl Fn(Reason) -> bool) -> Option<Reason> {
    if lower.is_empty() {
        return None;
    }
    let held = HELD_OUT.with(|h| {
        h.borrow().as_ref().map(|h| {
            RULES
                .iter()
                .filter(|rule| {
                    rule.phrases
                        .iter()
                        .any(|p| !h.removed.contains(p) && lower.contains(p))
                })
                .map(|rule| rule.reason)
                .find(|r| accept(*r))
        })
    });
    if let Some(r) = held {
        return r;
    }
    match PHRASES.as_ref() {
        // One pass over the text for every phrase at once, then the rules in order.
        Some((automaton, rule_of)) => {
            let mut hit = vec![false; RULES.len()];
            for m in automaton.find_overlapping_iter(lower) {
                if let Some(slot) = rule_of
                    .get(m.pattern().as_usize())
                    .and_then(|i| hit.get_mut(*i))
                {
                    *slot = true;
                }
            }
            RULES
                .iter()
                .zip(hit)
                .filter(|(_, hit)| *hit)
                .map(|(rule, _)| rule.reason)
                .find(|r| accept(*r))
        }
        None => RULES
            .iter()
            .filter(|rule| rule.phrases.iter().any(|p| lower.contains(p)))
            .map(|rule| rule.reason)
            .find(|r| accept(*r)),
    }
}

/// Hard needs agreement: a recipient-level reason whose own text also names size, spam,
/// policy, the sender or a temporary condition becomes that other reason ([`contrary`]).
pub fn against_contrary(reason: Reason, text: &str) -> Reason {
    if reason.is_recipient_permanent()
        && let Some(other) = contrary(text)
    {
        return other;
    }
    reason
}

/// Words that say a refusal is temporary, whatever its code: a mailbox that is "gone"
/// only for now is not gone (RFC 5321 §4.2.1: the sender should try again).
const TEMPORARY: &[&str] = &[
    "try again",
    "please try again",
    "try later",
    "retry later",
    "please retry",
    "temporarily",
];

/// Contrary evidence against a recipient-level reason: the first reason in `text` that
/// speaks of something other than the address being gone — the mailbox's size or quota,
/// the message's size, spam, a virus, policy, the sender's IP, domain, authentication or
/// reputation, a rate, a disabled account — or a temporary condition ([`TEMPORARY`],
/// given as `on-hold` when no other reason is named). `None` when the text names none.
///
/// # Examples
/// ```
/// use rebound::detector::reason::contrary;
/// use rebound::verdict::Reason;
/// assert_eq!(contrary("550 5.1.1 <a@example.com>: Recipient address rejected: User unknown"), None);
/// assert_eq!(contrary("552 5.1.1 user unknown or max message size exceeded"), Some(Reason::MesgTooBig));
/// ```
pub fn contrary(text: &str) -> Option<Reason> {
    let lower = squash(text);
    // A directory's own words for an absent recipient outweigh what surrounds them
    // ("delivery blocked because: user not listed in Domino Directory").
    if UNAMBIGUOUS_USER_UNKNOWN
        .iter()
        .any(|p| lower.contains(p) && !phrase_removed(p))
    {
        return None;
    }
    let against = |r: Reason| {
        matches!(
            r,
            Reason::MailboxFull
                | Reason::MesgTooBig
                | Reason::SystemFull
                | Reason::Suspend
                | Reason::SpamDetected
                | Reason::VirusDetected
                | Reason::PolicyViolation
                | Reason::Blocked
                | Reason::BadReputation
                | Reason::AuthFailure
                | Reason::RequirePtr
                | Reason::Rejected
                | Reason::SecurityError
                | Reason::ExceedLimit
                | Reason::Speeding
                | Reason::TooManyConn
        )
    };
    let named = first_named(&lower, against);
    named.or_else(|| {
        TEMPORARY
            .iter()
            .any(|p| lower.contains(p))
            .then_some(Reason::OnHold)
    })
}

/// The phrase table with some phrases taken out, for this thread (see [`without_phrases`]).
struct HeldOut {
    removed: std::collections::HashSet<&'static str>,
}

thread_local! {
    static HELD_OUT: std::cell::RefCell<Option<HeldOut>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with the given phrases taken out of the table (the rule table and
/// [`UNAMBIGUOUS_USER_UNKNOWN`]) on this thread: the cross-validation harness leaves out
/// the phrases only one MTA family uses and measures that family without them. Not for
/// production use (it is slower than the compiled table).
#[doc(hidden)]
pub fn without_phrases<T>(removed: &[&'static str], f: impl FnOnce() -> T) -> T {
    let held = HeldOut {
        removed: removed.iter().copied().collect(),
    };
    let before = HELD_OUT.with(|h| h.borrow_mut().replace(held));
    let out = f();
    HELD_OUT.with(|h| *h.borrow_mut() = before);
    out
}

fn phrase_removed(p: &str) -> bool {
    HELD_OUT.with(|h| h.borrow().as_ref().is_some_and(|h| h.removed.contains(p)))
}

/// Builds this module's automata ([`super::warm_up`]).
pub(crate) fn warm_up() {
    once_cell::sync::Lazy::force(&PHRASES);
    once_cell::sync::Lazy::force(&STAGE_PHRASES);
}

/// Every phrase of the table in one Aho-Corasick automaton (fast to build, one linear
/// pass per text), with the index of the rule each pattern belongs to.
type PhraseAutomaton = (aho_corasick::AhoCorasick, Vec<usize>);

pub(crate) static PHRASES: once_cell::sync::Lazy<Option<PhraseAutomaton>> =
    once_cell::sync::Lazy::new(|| {
        let mut patterns = Vec::new();
        let mut rule_of = Vec::new();
        for (i, rule) in RULES.iter().enumerate() {
            for p in rule.phrases {
                patterns.push(*p);
                rule_of.push(i);
            }
        }
        // The default (a contiguous NFA for this many patterns): it searches these short
        // texts as fast as a DFA (measured), and building a DFA cost a one-shot
        // `rebound classify` a tenth of its run.
        aho_corasick::AhoCorasick::new(patterns)
            .ok()
            .map(|a| (a, rule_of))
    });

/// The reason an enhanced status code alone implies (see the module table), if any.
pub fn from_status(status: &str) -> Option<Reason> {
    let mut parts = status.split('.');
    let class = parts.next()?;
    let subject: u32 = parts.next()?.parse().ok()?;
    let detail: u32 = parts.next()?.parse().ok()?;
    let permanent = class == "5";
    Some(match (subject, detail) {
        (1, 1) | (1, 3) | (1, 4) if permanent => Reason::UserUnknown,
        (1, 1) | (1, 3) | (1, 4) => Reason::OnHold,
        (1, 2) => Reason::HostUnknown,
        (1, 6) => Reason::HasMoved,
        (1, 7) | (1, 8) => Reason::Rejected,
        (1, 10) => Reason::NotAccept,
        (2, 1) => Reason::Suspend,
        (2, 2) => Reason::MailboxFull,
        (2, 3) => Reason::ExceedLimit,
        (3, 4) => Reason::MesgTooBig,
        (3, 1) => Reason::SystemFull,
        (3, 2) => Reason::NotAccept,
        (3, _) => Reason::SystemError,
        (4, 7) => Reason::Expired,
        // X.4.4 "unable to route": permanent means no mail host for the domain.
        (4, 4) if permanent => Reason::HostUnknown,
        (4, _) => Reason::NetworkError,
        (5, 3) => Reason::ExceedLimit,
        (5, _) => Reason::SyntaxError,
        (6, _) => Reason::ContentError,
        (7, 1) => Reason::Rejected,
        (7, 13) => Reason::Suspend,
        (7, 25) => Reason::RequirePtr,
        (7, 23) | (7, 24) | (7, 26) => Reason::AuthFailure,
        // RFC 7505: x.7.27 is the *sender's* domain publishing a null MX.
        (7, 27) => Reason::Rejected,
        (7, _) => Reason::SecurityError,
        _ => return None,
    })
}

/// Classifies one recipient: the phrase rules over `text`, then the status code, then the
/// DSN action; `undefined` when nothing says enough.
pub fn classify(text: &str, status: Option<&str>, action: Option<&str>) -> Reason {
    classify_in(text, "", status, action)
}

/// [`classify`], with `context`: the text around the diagnostic (an SMTP transcript, the
/// bounce's sentence about the recipient), read for the SMTP stage when the diagnostic
/// itself does not name it.
pub fn classify_in(
    text: &str,
    context: &str,
    status: Option<&str>,
    action: Option<&str>,
) -> Reason {
    classify_found(from_text(text), text, context, status, action)
}

/// [`classify_in`] with the phrase table's answer for `text` already known.
pub fn classify_found(
    found: Option<Reason>,
    text: &str,
    context: &str,
    status: Option<&str>,
    action: Option<&str>,
) -> Reason {
    let action = action.map(|a| a.trim().to_ascii_lowercase());
    if let Some(a) = action.as_deref()
        && (a.starts_with("delivered") || a.starts_with("relayed") || a.starts_with("expanded"))
    {
        return Reason::Delivered;
    }
    if let Some(s) = status
        && s.starts_with('2')
    {
        return Reason::Delivered;
    }
    let head = text.trim_start().get(..7).unwrap_or("");
    if head.eq_ignore_ascii_case("x-unix;") || head.eq_ignore_ascii_case("x-unix ") {
        // A local delivery program failed; what it printed decides only for a full mailbox.
        return match found {
            Some(Reason::MailboxFull) => Reason::MailboxFull,
            _ => Reason::MailerError,
        };
    }
    // Exchange Online's directory-based edge blocking: "550 5.4.1 Recipient address
    // rejected: Access denied" is its documented answer for a recipient it does not have.
    if status == Some("5.4.1") && squash(text).contains("recipient address rejected: access denied")
    {
        return Reason::UserUnknown;
    }
    if let Some(mut r) = found {
        // RFC 3463 X.2.3: the message is larger than this recipient's limit.
        if r == Reason::MesgTooBig && status.is_some_and(|s| s.get(1..) == Some(".2.3")) {
            r = Reason::ExceedLimit;
        }
        // A temporary (4.x.x) "domain not found" is a DNS failure, not a verdict on the domain.
        if r == Reason::HostUnknown && status.is_some_and(|s| s.starts_with('4')) {
            r = Reason::NetworkError;
        }
        if !r.is_recipient_permanent() {
            return r;
        }
        let staged = if context.is_empty() || Stage::of(text).is_some() {
            text.to_owned()
        } else {
            format!("{context}\n{text}")
        };
        return against_contrary(confirm(r, &staged, status), text);
    }
    if let Some(r) = status.and_then(from_status) {
        // A code alone is believed only at the stage it can be given at.
        return if r.is_recipient_permanent() {
            against_contrary(confirm(r, &format!("{context}\n{text}"), status), text)
        } else {
            r
        };
    }
    if action.as_deref().is_some_and(|a| a.starts_with("delayed")) {
        return Reason::Expired;
    }
    if status.is_some_and(|s| s.starts_with('4')) {
        return Reason::OnHold;
    }
    Reason::Undefined
}

/// A "user unknown" text is only believed when the status is a recipient-address code
/// (x.1.x), or, with no specific status, when the answer came to `RCPT TO`. A user-unknown
/// answer to the message content (after DATA, or with a policy or mailbox-status code such
/// as 5.7.1 or 5.2.x) is a filter rejection: the recipient may well exist.
pub fn confirm(reason: Reason, text: &str, status: Option<&str>) -> Reason {
    if !reason.is_recipient_permanent() {
        return reason;
    }

    let l = squash(text);
    let stage = Stage::of_squashed(&l);
    if reason.is_recipient_permanent() && stage == Some(Stage::MailFrom) {
        // Refused before any recipient was named: it is about the sender.
        return Reason::Rejected;
    }
    if reason == Reason::HostUnknown && stage == Some(Stage::Data) {
        return Reason::Rejected;
    }
    if reason != Reason::UserUnknown {
        return reason;
    }
    let mut parts = status.unwrap_or("").split('.');
    let _class = parts.next();
    let subject = parts.next();
    let detail = parts.next();
    if subject == Some("1") {
        // RFC 3463 X.1.6 (and reply 551): the mailbox has moved, not vanished.
        if detail == Some("6") {
            return Reason::HasMoved;
        }
        return Reason::UserUnknown;
    }
    if subject == Some("2") && detail == Some("1") && stage == Some(Stage::Rcpt) {
        // "550 5.2.1 <a@b>... User Unknown" in reply to RCPT TO: no content has been sent
        // yet, so no filter judged it; the server names the recipient as unknown.
        return Reason::UserUnknown;
    }
    let unambiguous = UNAMBIGUOUS_USER_UNKNOWN
        .iter()
        .any(|p| l.contains(p) && !phrase_removed(p));
    if unambiguous && (subject.is_none() || detail == Some("0")) {
        // Said in words no filter uses; a pipelining server may give it to DATA.
        return Reason::UserUnknown;
    }
    if stage == Some(Stage::Data) {
        return Reason::Filtered;
    }
    match (subject, detail) {
        (None, _) | (Some("0" | "3" | "5"), Some("0")) => {
            let at_rcpt = stage == Some(Stage::Rcpt)
                || l.contains("recipient address rejected")
                || l.contains("recipient rejected");
            if at_rcpt {
                Reason::UserUnknown
            } else {
                Reason::Filtered
            }
        }
        _ => Reason::Filtered,
    }
}

/// Phrases whose source is outside the corpus: an RFC or the vendor's own documented
/// text. They are kept when the cross-validation harness leaves out the phrases only one
/// MTA family uses (every other phrase's families are listed in
/// `docs/reason-phrases.tsv`, made by that harness). RFC 5321's generic 550 text
/// "mailbox unavailable" is deliberately absent from the table: §4.2.3 gives it for
/// "mailbox not found, no access, or command rejected for policy reasons" alike.
pub static DOCUMENTED: &[(&str, &str)] = &[
    (
        "too many recipients",
        "RFC 5321 §4.5.3.1.10: the reply for too many RCPT commands",
    ),
    (
        "host not found, try again",
        "Postfix: its text for a temporary DNS failure",
    ),
    (
        "not listed in domino directory",
        "IBM Domino: the directory lookup of the recipient failed",
    ),
    (
        "recipient name is not recognized",
        "Microsoft Exchange 2000/2003 NDR text",
    ),
    (
        "unrouteable address",
        "Exim: no route to the recipient's domain",
    ),
    ("mailbox full", "RFC 3463 X.2.2 \"Mailbox full\""),
    (
        "message too large",
        "RFC 3463 X.3.4 \"Message too big for system\"",
    ),
    ("relay access denied", "Postfix: reject_unauth_destination"),
];

/// Directory answers that name the recipient as absent in words no filter or policy
/// rejection uses: believed without a recipient status code or an SMTP stage. A phrase
/// only belongs here when no labelled corpus message uses it for anything but an
/// unknown recipient (plain "user unknown" does not qualify: filtering appliances send
/// it too).
pub static UNAMBIGUOUS_USER_UNKNOWN: &[&str] = &[
    // Lotus Domino: the directory lookup of the recipient failed.
    "not listed in domino directory",
    // Exchange 2000/2003 (IMS): the recipient's name resolved to nothing.
    "recipient name is not recognized",
    // Gmail, when the receiving side said the address does not exist.
    "because the address couldn't be found. check for typos",
    // MMS gateways: no recipient of the multimedia message exists.
    "no valid recipients for this mm",
    // French: "invalid recipient address".
    "adresse destinataire invalide",
    // Lotus Notes: the recipient is not in the server's address book.
    "not listed in public name & address book",
    // IMail: no local user id for the address.
    "invalid final delivery userid",
    // Yahoo's answer for an account it does not have ("554 delivery error: dd This user
    // doesn't have a yahoo.com account"); the bare sentence without "dd" is also sent by
    // filtering gateways, so only the whole answer counts.
    "delivery error: dd this user doesn't have a",
];

/// The SMTP command a remote server answered, as the text tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `MAIL FROM`: the sender was refused.
    MailFrom,
    /// `RCPT TO`: the recipient was refused.
    Rcpt,
    /// `DATA` or the end of data: the content was refused.
    Data,
}

impl Stage {
    /// Reads the stage off phrases such as "in reply to RCPT TO command", "after end of
    /// data", ">>> MAIL From:" or "after MAIL FROM:". The last stage named wins.
    pub fn of(text: &str) -> Option<Stage> {
        Stage::of_squashed(&squash(text))
    }

    /// [`Stage::of`] for text already passed through `squash`.
    fn of_squashed(l: &str) -> Option<Stage> {
        let (set, stages) = STAGE_PHRASES.as_ref()?;
        // Every occurrence of every phrase in one pass; the one that starts last wins,
        // and of two that start together the later stage.
        set.find_overlapping_iter(l)
            .filter_map(|m| Some((m.start(), *stages.get(m.pattern().as_usize())?)))
            .max_by_key(|&(start, stage)| (start, stage as u8))
            .map(|(_, stage)| stage)
    }
}

/// The phrases that name a stage, with the stage each names.
const STAGE_NAMES: &[(&str, Stage)] = &[
    ("in reply to mail from", Stage::MailFrom),
    ("after mail from", Stage::MailFrom),
    (">>> mail from", Stage::MailFrom),
    ("mail from command", Stage::MailFrom),
    ("in reply to rcpt to", Stage::Rcpt),
    ("after rcpt", Stage::Rcpt),
    ("did not like our rcpt to", Stage::Rcpt),
    (">>> rcpt to", Stage::Rcpt),
    ("rcpt to command", Stage::Rcpt),
    ("in reply to rcpt", Stage::Rcpt),
    ("rcpt to:<", Stage::Rcpt),
    ("smtp:rcpt", Stage::Rcpt),
    ("has rejected address", Stage::Rcpt),
    ("rejected the address", Stage::Rcpt),
    ("in reply to end of data", Stage::Data),
    ("after end of data", Stage::Data),
    ("in reply to data", Stage::Data),
    ("after data", Stage::Data),
    (">>> data", Stage::Data),
    ("end of data command", Stage::Data),
    ("data command", Stage::Data),
    ("final data", Stage::Data),
];

/// [`STAGE_NAMES`] as one automaton (overlapping matches: a phrase inside another still
/// counts where it starts).
static STAGE_PHRASES: once_cell::sync::Lazy<Option<(aho_corasick::AhoCorasick, Vec<Stage>)>> =
    once_cell::sync::Lazy::new(|| {
        aho_corasick::AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
            .build(STAGE_NAMES.iter().map(|(p, _)| p))
            .ok()
            .map(|a| (a, STAGE_NAMES.iter().map(|(_, s)| *s).collect()))
    });

/// Texts shorter than this are squashed every time: looking them up costs as much.
const MEMO_MIN: usize = 64;
/// The texts squashed last on this thread. One message's texts are read by several rules
/// (the bounce text, a recipient's block, its diagnostic), each squashing them again.
const MEMO_LEN: usize = 8;

/// A squashed text and what [`from_text`] found in it.
struct Squashed {
    /// The bytes `squashed` was made of: the whole text, or its first 8 192 characters.
    key: Box<str>,
    whole: bool,
    squashed: String,
    named: Option<Option<Reason>>,
}

thread_local! {
    static SQUASHED: std::cell::RefCell<Vec<Squashed>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the memo entry of `text`, made now if the text was not squashed lately.
fn with_squashed<R>(text: &str, f: impl FnOnce(&mut Squashed) -> R) -> R {
    SQUASHED.with(|memo| {
        let mut memo = memo.borrow_mut();
        let hit = memo.iter().position(|e| {
            if e.whole {
                *e.key == *text
            } else {
                text.starts_with(&*e.key)
            }
        });
        let at = match hit {
            Some(i) => i,
            None => {
                let (squashed, used) = squash_prefix(text);
                memo.truncate(MEMO_LEN - 1);
                memo.insert(
                    0,
                    Squashed {
                        key: text.get(..used).unwrap_or(text).into(),
                        whole: used >= text.len(),
                        squashed,
                        named: None,
                    },
                );
                0
            }
        };
        match memo.get_mut(at) {
            Some(e) => f(e),
            None => {
                let (squashed, _) = squash_prefix(text);
                f(&mut Squashed {
                    key: "".into(),
                    whole: true,
                    squashed,
                    named: None,
                })
            }
        }
    })
}

/// Lower-cases and collapses runs of whitespace to one space (the first 8 192 characters).
pub(crate) fn squash(text: &str) -> String {
    if text.len() < MEMO_MIN {
        return squash_prefix(text).0;
    }
    with_squashed(text, |e| e.squashed.clone())
}

/// [`squash`], and how many bytes of `text` it read.
fn squash_prefix(text: &str) -> (String, usize) {
    const MAX_CHARS: usize = 8192;
    let mut out: Vec<u8> = Vec::with_capacity(text.len().min(MAX_CHARS));
    let mut space = true;
    let bytes = text.as_bytes();
    let (mut i, mut chars) = (0usize, 0usize);
    while let Some(&b) = bytes.get(i)
        && chars < MAX_CHARS
    {
        chars += 1;
        // ASCII, byte by byte: nearly all of every text read here.
        if b.is_ascii() {
            i += 1;
            if b.is_ascii_whitespace() {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            } else {
                out.push(b.to_ascii_lowercase());
                space = false;
            }
            continue;
        }
        let Some(c) = text.get(i..).and_then(|t| t.chars().next()) else {
            break;
        };
        i += c.len_utf8();
        if c.is_whitespace() {
            if !space {
                out.push(b' ');
                space = true;
            }
        } else {
            let mut buf = [0u8; 4];
            for l in c.to_lowercase() {
                out.extend_from_slice(l.encode_utf8(&mut buf).as_bytes());
            }
            space = false;
        }
    }
    if out.last() == Some(&b' ') {
        out.pop();
    }
    // Only whole characters were pushed, so this never fails.
    let out = String::from_utf8(out).unwrap_or_default();
    if out.contains('-') {
        (strip_continuations(&out), i)
    } else {
        (out, i)
    }
}

/// Drops the prefixes of continued SMTP reply lines ("550-5.2.1 ", "421-"), which split
/// the sentence the server wrote.
fn strip_continuations(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0usize;
    let mut last = 0usize;
    while i + 4 <= b.len() {
        let at_word = i == 0 || b.get(i - 1) == Some(&b' ');
        let is_prefix = at_word
            && b.get(i).is_some_and(|c| matches!(c, b'2' | b'4' | b'5'))
            && b.get(i + 1).is_some_and(u8::is_ascii_digit)
            && b.get(i + 2).is_some_and(u8::is_ascii_digit)
            && b.get(i + 3) == Some(&b'-');
        if is_prefix && i > 0 {
            out.push_str(text.get(last..i).unwrap_or(""));
            let mut j = i + 4;
            // An enhanced code right after the hyphen belongs to the prefix too.
            let code_end = b
                .get(j..)
                .and_then(|rest| rest.iter().position(|c| *c == b' '))
                .map(|p| j + p);
            if let Some(end) = code_end {
                let tok = text.get(j..end).unwrap_or("");
                if tok.split('.').count() == 3
                    && tok
                        .split('.')
                        .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
                {
                    j = end + 1;
                }
            }
            i = j;
            last = j;
            continue;
        }
        i += 1;
    }
    out.push_str(text.get(last..).unwrap_or(""));
    out
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn squash_lowercases_collapses_space_and_joins_continued_replies() {
        assert_eq!(squash("  550 User\tUNKNOWN \r\n "), "550 user unknown");
        // Non-ASCII letters are lower-cased, non-ASCII spaces collapse like ASCII ones.
        assert_eq!(
            squash("Ünbekannt\u{a0}\u{a0}Empfänger"),
            "ünbekannt empfänger"
        );
        assert_eq!(
            squash("550-5.1.1 The email account\n550-5.1.1 does not exist"),
            "550-5.1.1 the email account does not exist"
        );
        // At most 8 192 characters, whatever their width.
        assert_eq!(squash(&"é".repeat(9000)).chars().count(), 8192);
    }

    #[test]
    fn squashing_again_gives_what_squashing_once_gives() {
        let long = "550 5.1.1 User Unknown ".repeat(20);
        let longer = format!("{long} and more");
        // A text that is the start of another is not taken for it, and back.
        for t in [&long, &longer, &long, &longer] {
            assert_eq!(squash(t), squash_prefix(t).0);
            assert_eq!(from_text(t), first_named(&squash_prefix(t).0, |_| true));
        }
        // Past 8 192 characters only the first ones count, whatever follows.
        let head = "a ".repeat(5000);
        let (x, y) = (format!("{head}x"), format!("{head}y"));
        assert_eq!(squash(&x), squash_prefix(&x).0);
        assert_eq!(squash(&y), squash_prefix(&y).0);
        assert_eq!(squash(&x), squash(&y));
        let short = "Mailbox FULL";
        assert_eq!(squash(short), "mailbox full");
    }

    #[test]
    fn the_last_stage_named_wins() {
        assert_eq!(
            Stage::of("550 in reply to RCPT TO command"),
            Some(Stage::Rcpt)
        );
        assert_eq!(
            Stage::of("after RCPT TO: ok, then 554 after end of data"),
            Some(Stage::Data)
        );
        assert_eq!(
            Stage::of(">>> MAIL From:<a@b.example>\n<<< 550"),
            Some(Stage::MailFrom)
        );
        // "in reply to rcpt to" and "in reply to rcpt" start together: both say RCPT.
        assert_eq!(Stage::of("In reply to RCPT TO"), Some(Stage::Rcpt));
        assert_eq!(Stage::of("mailbox unavailable"), None);
    }

    #[test]
    fn contrary_evidence_makes_a_recipient_reason_the_texts_other_reason() {
        for (text, status, want) in [
            (
                "552 sorry, max message size exceeded (#5.1.1)",
                "5.1.1",
                Reason::MesgTooBig,
            ),
            (
                "550 5.1.1 user unknown; your IP 198.51.100.7 is listed on a blocklist",
                "5.1.1",
                Reason::Blocked,
            ),
            (
                "550 5.1.1 mailbox unknown, please try again later",
                "5.1.1",
                Reason::SystemError,
            ),
            ("550 5.1.1 user unknown, try again", "5.1.1", Reason::OnHold),
        ] {
            assert_eq!(
                classify_in(
                    text,
                    "in reply to RCPT TO command",
                    Some(status),
                    Some("failed")
                ),
                want,
                "{text}"
            );
        }
        assert_eq!(
            classify_in(
                "550 5.1.1 <a@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
                "",
                Some("5.1.1"),
                Some("failed")
            ),
            Reason::UserUnknown
        );
    }

    #[test]
    fn x_7_27_is_the_senders_null_mx() {
        assert_eq!(from_status("5.7.27"), Some(Reason::Rejected));
        assert_eq!(from_status("5.1.10"), Some(Reason::NotAccept));
    }

    #[test]
    fn classify_policy_rejection_is_not_user_unknown() {
        for text in [
            "550 5.7.1 <a@example.com>: Recipient address rejected: blocked using zen.spamhaus.org",
            "554 5.7.1 Message rejected as spam",
            "550 5.7.1 Your IP address is listed in a blocklist; recipient rejected",
            "550 5.7.26 Unauthenticated email is not accepted; DMARC policy",
        ] {
            assert_ne!(
                classify(text, Some("5.7.1"), Some("failed")),
                Reason::UserUnknown,
                "{text}"
            );
        }
    }

    #[test]
    fn classify_reads_common_phrases() {
        assert_eq!(
            classify(
                "550 5.1.1 <a@b>: User unknown in virtual mailbox table",
                Some("5.1.1"),
                None
            ),
            Reason::UserUnknown
        );
        assert_eq!(
            classify("552 5.2.2 Mailbox full", None, None),
            Reason::MailboxFull
        );
        assert_eq!(
            classify("Host or domain name not found", None, None),
            Reason::HostUnknown
        );
        assert_eq!(
            classify("554 5.7.1 <a@b>: Relay access denied", None, None),
            Reason::NoRelaying
        );
        assert_eq!(classify("", Some("5.1.1"), None), Reason::UserUnknown);
        assert_eq!(
            classify("", Some("4.4.7"), Some("delayed")),
            Reason::Expired
        );
        assert_eq!(
            classify("", Some("2.0.0"), Some("delivered")),
            Reason::Delivered
        );
        assert_eq!(classify("", None, None), Reason::Undefined);
    }

    #[test]
    fn phrase_automaton_agrees_with_the_table() {
        assert!(PHRASES.is_some());
        for rule in RULES {
            for p in rule.phrases {
                let text = format!("x {p} x");
                let lower = squash(&text);
                let linear = RULES
                    .iter()
                    .find(|r| r.phrases.iter().any(|q| lower.contains(q)))
                    .map(|r| r.reason);
                assert_eq!(from_text(&text), linear, "{p}");
                assert!(linear.is_some());
            }
        }
    }

    #[test]
    fn classify_reads_added_phrases() {
        // A directory answer no filter gives is believed without a code or stage.
        assert_eq!(
            classify(
                "User some.name (a@b.example) not listed in Domino Directory",
                Some("5.0.0"),
                None
            ),
            Reason::UserUnknown
        );
        assert_eq!(
            classify(
                ">>> DATA <<< 550 5.5.0 Adresse destinataire invalide. Invalid recipient",
                Some("5.5.0"),
                None
            ),
            Reason::UserUnknown
        );
        // Plain "user unknown" still needs evidence.
        assert_eq!(
            classify("550 User unknown", Some("5.0.0"), None),
            Reason::Filtered
        );
        // With x.2.1, the stage decides: at RCPT TO no content had been judged yet.
        let unknown = "550 5.2.1 <a@b.example>... User Unknown";
        assert_eq!(classify(unknown, Some("5.2.1"), None), Reason::Filtered);
        for stage in [
            "(in reply to RCPT TO command)",
            "SMTP error from remote server after RCPT command:",
            "mx.b.example did not like our RCPT TO:",
        ] {
            assert_eq!(
                classify(&format!("{stage} {unknown}"), Some("5.2.1"), None),
                Reason::UserUnknown,
                "{stage}"
            );
        }
        assert_eq!(
            classify(&format!(">>> DATA {unknown}"), Some("5.2.1"), None),
            Reason::Filtered
        );
        // Yahoo's whole answer is believed; its last sentence alone is not.
        assert_eq!(
            classify(
                "554 delivery error: dd This user doesn't have a yahoo.com account (a@yahoo.com) [0]",
                Some("5.0.0"),
                None
            ),
            Reason::UserUnknown
        );
        assert_eq!(
            classify(
                "This user doesn't have a example.com account (a@example.com) [0]",
                Some("5.0.0"),
                None
            ),
            Reason::Filtered
        );
        assert_eq!(
            classify("551 not our user", Some("5.1.6"), None),
            Reason::HasMoved
        );
        // Two transcript lines joined must not read as "unknown host".
        assert_eq!(
            classify(
                "550 5.1.1 <a@b.example>... User Unknown host mx.b.example [192.0.2.1]: 550 5.1.1",
                Some("5.1.1"),
                None
            ),
            Reason::UserUnknown
        );
        // "mimecast" is not a MIME complaint.
        assert_eq!(
            from_text("554 Host network not allowed - https://community.mimecast.com/docs"),
            Some(Reason::PolicyViolation)
        );
        assert_eq!(
            from_text("550 5.2.0 Message Filtered"),
            Some(Reason::Filtered)
        );
        assert_eq!(
            from_text("550 has sent to too many recipients this hour"),
            Some(Reason::Speeding)
        );
        assert_eq!(from_text("450 4.0.0 Temporary failure"), None);
    }

    #[test]
    fn status_table_is_conservative_for_temporary_codes() {
        assert_eq!(from_status("4.1.1"), Some(Reason::OnHold));
        assert_eq!(from_status("5.1.1"), Some(Reason::UserUnknown));
        assert_eq!(from_status("5.7.1"), Some(Reason::Rejected));
        assert_eq!(from_status("nonsense"), None);
    }
}
