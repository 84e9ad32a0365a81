"""Provider declarations for the tests (PIPELINE_MODULES=tests.provider_decls): the ads platform,
by its own refresh (a non-standard JSON body) and by standard OAuth2 (RFC 6749 §6)."""

from bot.tokens.providers import Provider, StandardGrant, json_app_secret_grant

ADS_CODES = dict(expired_codes={40102}, grant_invalid_codes={40103, 40107}, transient_codes={40100, 50000})

# as bot/pipelines/examples.py would declare it: OAUTH_PROVIDERS' api_url moves both endpoints
ADS = Provider("ads", api_url="https://ads.invalid", token_url="/open_api/oauth2/refresh_token/",
               grant=json_app_secret_grant, access_seconds=86400, refresh_seconds=30 * 86400, **ADS_CODES)
ADS_OAUTH2 = Provider("ads-oauth2", token_url="https://ads.invalid/ads/oauth2/token",
                      grant=StandardGrant(auth_method="client_secret_basic"), access_seconds=86400,
                      expired_codes={40102}, title="Ads (OAuth2)")

PROVIDERS = [ADS, ADS_OAUTH2]
