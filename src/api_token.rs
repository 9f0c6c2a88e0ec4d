//! `--api-token-file`: the bearer token the provisioning and management APIs require
//! (needed when either is bound beyond loopback), shared by the commands that serve or
//! call them.

use std::path::PathBuf;

use clap::Args;
use homestead::api::bearer::ApiToken;

/// Options of the API token.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct ApiTokenArgs {
    /// File whose first line is the bearer token (at least 16 printable characters) that
    /// the provisioning (8889) and management (9886) APIs require in `Authorization:
    /// Bearer <token>`. Needed when either is bound beyond loopback; the process refuses
    /// to start without it then.
    #[arg(long, env = "WW_API_TOKEN_FILE")]
    api_token_file: Option<PathBuf>,
}

impl ApiTokenArgs {
    /// The token, when a file was given.
    pub(crate) fn load(&self) -> Result<Option<ApiToken>, String> {
        self.api_token_file
            .as_deref()
            .map(ApiToken::from_file)
            .transpose()
    }
}
