"""Behaviour of jobstream.settings: defaults, JOBSTREAM_* variables and derived values.

Every test passes its own environment dict: none reads or changes os.environ.
"""

from __future__ import annotations

import dataclasses

import pytest

from jobstream.settings import DEFAULT_BROKERS, Settings

# --- defaults -----------------------------------------------------------------------------------


def test_defaults_describe_the_local_three_broker_stack() -> None:
    # Given / When settings are built without arguments
    settings = Settings()

    # Then they are the documented defaults
    assert settings.role == "client"
    assert settings.kafka_brokers == DEFAULT_BROKERS
    assert settings.mongo_url == "mongodb://127.0.0.1:27017/"
    assert settings.mongo_database == "jobstream"
    assert settings.request_topic == "application.operation.request"
    assert settings.response_topic == "application.operation.response"
    assert settings.dead_letter_topic == "application.operation.dead-letter"
    assert settings.server_group == "operation-request-group"
    assert settings.client_group == "operation-response-group"
    assert settings.partitions == 60
    assert settings.job_events_partitions == 3
    assert settings.replication_factor == 3
    assert settings.min_insync_replicas == 2
    assert settings.compute_concurrency == 10
    assert settings.persist_batch_size == 1000
    assert settings.max_body_bytes == 4 * 1024 * 1024
    assert settings.max_line_length == 1000
    assert settings.max_operations == 100_000
    assert settings.reconcile_interval == 10.0
    assert settings.reconcile_after == 120.0
    assert settings.max_attempts == 10
    assert settings.web_host == "127.0.0.1"
    assert settings.web_port == 8080
    assert settings.data_dir == ".infra/workers/default"
    assert settings.log_level == "INFO"
    assert settings.publish_deadline == 5.0
    assert settings.api_tokens == ()
    assert settings.extra == {}


def test_empty_environment_gives_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_unrelated_variables_are_ignored() -> None:
    env = {"PATH": "/bin", "JOBSTREAM": "x", "KAFKA_BROKERS": "elsewhere:9092"}
    assert Settings.from_env(env) == Settings()


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.role = "server"  # type: ignore[misc]


# --- from_env: values ---------------------------------------------------------------------------

STRINGS = [
    ("JOBSTREAM_KAFKA_BROKERS", "kafka_brokers", "k1:9092,k2:9092"),
    ("JOBSTREAM_MONGO_URL", "mongo_url", "mongodb://db:27017/?replicaSet=rs0"),
    ("JOBSTREAM_MONGO_DATABASE", "mongo_database", "jobs_test"),
    ("JOBSTREAM_REQUEST_TOPIC", "request_topic", "req"),
    ("JOBSTREAM_RESPONSE_TOPIC", "response_topic", "resp"),
    ("JOBSTREAM_DEAD_LETTER_TOPIC", "dead_letter_topic", "dlq"),
    ("JOBSTREAM_BULK_REQUEST_TOPIC", "bulk_request_topic", "req.bulk"),
    ("JOBSTREAM_BULK_RESPONSE_TOPIC", "bulk_response_topic", "resp.bulk"),
    ("JOBSTREAM_SERVER_GROUP", "server_group", "servers"),
    ("JOBSTREAM_CLIENT_GROUP", "client_group", "clients"),
    ("JOBSTREAM_WEB_HOST", "web_host", "0.0.0.0"),
    ("JOBSTREAM_DATA_DIR", "data_dir", "/var/lib/jobstream"),
]
INTEGERS = [
    ("JOBSTREAM_PARTITIONS", "partitions", 1, 10_000),
    ("JOBSTREAM_JOB_EVENTS_PARTITIONS", "job_events_partitions", 1, 10_000),
    ("JOBSTREAM_REPLICATION_FACTOR", "replication_factor", 1, 10),
    ("JOBSTREAM_MIN_INSYNC_REPLICAS", "min_insync_replicas", 1, 10),
    ("JOBSTREAM_COMPUTE_CONCURRENCY", "compute_concurrency", 10, 20),
    ("JOBSTREAM_PERSIST_BATCH_SIZE", "persist_batch_size", 1, 100_000),
    ("JOBSTREAM_BULK_OPERATIONS", "bulk_operations", 1, 10_000_000),
    ("JOBSTREAM_PRODUCER_LINGER_MS", "producer_linger_ms", 0, 1000),
    ("JOBSTREAM_FETCH_MIN_BYTES", "fetch_min_bytes", 1, 1 << 20),
    ("JOBSTREAM_FETCH_MAX_WAIT_MS", "fetch_max_wait_ms", 1, 10_000),
    ("JOBSTREAM_MAX_BODY_BYTES", "max_body_bytes", 1, 1 << 30),
    ("JOBSTREAM_MAX_LINE_LENGTH", "max_line_length", 1, 10_000),
    ("JOBSTREAM_MAX_OPERATIONS", "max_operations", 1, 10_000_000),
    ("JOBSTREAM_MAX_ATTEMPTS", "max_attempts", 1, 1000),
    ("JOBSTREAM_WEB_PORT", "web_port", 1, 65535),
]
FLOATS = [
    ("JOBSTREAM_RECONCILE_INTERVAL", "reconcile_interval"),
    ("JOBSTREAM_RECONCILE_AFTER", "reconcile_after"),
    ("JOBSTREAM_PUBLISH_DEADLINE", "publish_deadline"),
]


@pytest.mark.parametrize(("variable", "attribute", "value"), STRINGS)
def test_string_variable_sets_its_setting(variable: str, attribute: str, value: str) -> None:
    # Given one JOBSTREAM_* variable
    # When settings are read from that environment
    settings = Settings.from_env({variable: value})

    # Then that setting has the variable's value and the others keep their defaults
    assert getattr(settings, attribute) == value
    assert (
        dataclasses.replace(settings, **{attribute: getattr(Settings(), attribute)}) == Settings()
    )


@pytest.mark.parametrize("role", ["client", "server"])
def test_role_variable_sets_the_role(role: str) -> None:
    assert Settings.from_env({"JOBSTREAM_ROLE": role}).role == role


@pytest.mark.parametrize(("variable", "attribute", "low", "high"), INTEGERS)
def test_integer_variable_accepts_both_ends_of_its_range(
    variable: str, attribute: str, low: int, high: int
) -> None:
    # The replication pair must stay consistent (min.insync.replicas <= replication factor),
    # so each is moved with the other held at a value that allows both ends.
    partner = {
        "JOBSTREAM_REPLICATION_FACTOR": ("JOBSTREAM_MIN_INSYNC_REPLICAS", "1"),
        "JOBSTREAM_MIN_INSYNC_REPLICAS": ("JOBSTREAM_REPLICATION_FACTOR", "10"),
    }.get(variable)
    extra = dict([partner]) if partner else {}
    assert getattr(Settings.from_env({**extra, variable: str(low)}), attribute) == low
    assert getattr(Settings.from_env({**extra, variable: str(high)}), attribute) == high


def test_a_bulk_topic_named_like_another_topic_is_refused_naming_both() -> None:
    env = {"JOBSTREAM_BULK_REQUEST_TOPIC": "application.operation.request"}
    with pytest.raises(
        ValueError,
        match="JOBSTREAM_REQUEST_TOPIC names the same topic as JOBSTREAM_BULK_REQUEST_TOPIC",
    ):
        Settings.from_env(env)


def test_min_insync_replicas_above_the_replication_factor_is_refused() -> None:
    # Given more in-sync replicas required than there are replicas
    env = {"JOBSTREAM_REPLICATION_FACTOR": "2", "JOBSTREAM_MIN_INSYNC_REPLICAS": "3"}
    # Then the settings are refused up front, naming both variables
    with pytest.raises(ValueError, match="JOBSTREAM_MIN_INSYNC_REPLICAS must not exceed"):
        Settings.from_env(env)


@pytest.mark.parametrize(("variable", "attribute"), FLOATS)
@pytest.mark.parametrize(("raw", "value"), [("0.5", 0.5), ("3", 3.0), ("1e-3", 0.001)])
def test_float_variable_sets_its_setting(
    variable: str, attribute: str, raw: str, value: float
) -> None:
    assert getattr(Settings.from_env({variable: raw}), attribute) == value


@pytest.mark.parametrize(("variable", "attribute"), [(v, a) for v, a, _, _ in INTEGERS] + FLOATS)
def test_empty_numeric_variable_means_the_default(variable: str, attribute: str) -> None:
    # Given a numeric variable that is set but empty (as `FOO=` in a compose file leaves it)
    # Then the default is used rather than failing
    assert getattr(Settings.from_env({variable: ""}), attribute) == getattr(Settings(), attribute)


@pytest.mark.parametrize(("raw", "level"), [("debug", "DEBUG"), ("Warning", "WARNING")])
def test_log_level_is_upper_cased(raw: str, level: str) -> None:
    assert Settings.from_env({"JOBSTREAM_LOG_LEVEL": raw}).log_level == level


def test_a_full_environment_is_read_variable_by_variable() -> None:
    # Given a server's complete environment
    env = {
        "JOBSTREAM_ROLE": "server",
        "JOBSTREAM_KAFKA_BROKERS": "k:9092",
        "JOBSTREAM_PARTITIONS": "12",
        "JOBSTREAM_COMPUTE_CONCURRENCY": "20",
        "JOBSTREAM_PERSIST_BATCH_SIZE": "100",
        "JOBSTREAM_WEB_PORT": "9000",
        "JOBSTREAM_LOG_LEVEL": "debug",
    }

    # When settings are read
    settings = Settings.from_env(env)

    # Then each variable landed in its own setting
    assert (settings.role, settings.kafka_brokers, settings.partitions) == ("server", "k:9092", 12)
    assert (settings.compute_concurrency, settings.persist_batch_size) == (20, 100)
    assert (settings.web_port, settings.log_level) == (9000, "DEBUG")
    assert settings.mongo_url == Settings().mongo_url


# --- from_env: bad values -----------------------------------------------------------------------


@pytest.mark.parametrize("role", ["", "Client", "SERVER", "worker", " client"])
def test_unknown_role_is_refused_naming_the_variable(role: str) -> None:
    with pytest.raises(ValueError, match="JOBSTREAM_ROLE must be 'client' or 'server'"):
        Settings.from_env({"JOBSTREAM_ROLE": role})


@pytest.mark.parametrize(("variable", "attribute", "low", "high"), INTEGERS)
@pytest.mark.parametrize("raw", ["ten", "1.5", "0x10", "1e3", "--1", "12abc"])
def test_non_integer_value_is_refused_naming_the_variable(
    variable: str, attribute: str, low: int, high: int, raw: str
) -> None:
    with pytest.raises(ValueError, match=f"{variable} must be an integer, got {raw!r}"):
        Settings.from_env({variable: raw})


@pytest.mark.parametrize(("variable", "attribute", "low", "high"), INTEGERS)
def test_integer_outside_its_range_is_refused_naming_the_variable(
    variable: str, attribute: str, low: int, high: int
) -> None:
    # Given a value one below and one above the variable's range
    for value in (low - 1, high + 1):
        # When settings are read, they are refused with the variable, its range and the value
        with pytest.raises(ValueError) as caught:
            Settings.from_env({variable: str(value)})
        assert str(caught.value) == f"{variable} must be between {low} and {high}, got {value}"


@pytest.mark.parametrize("value", ["9", "21", "0", "-10"])
def test_compute_concurrency_outside_10_to_20_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="JOBSTREAM_COMPUTE_CONCURRENCY must be between 10 and 20"):
        Settings.from_env({"JOBSTREAM_COMPUTE_CONCURRENCY": value})


@pytest.mark.parametrize(("variable", "attribute"), FLOATS)
@pytest.mark.parametrize("raw", ["fast", "1,5", "1s"])
def test_non_numeric_float_value_is_refused_naming_the_variable(
    variable: str, attribute: str, raw: str
) -> None:
    with pytest.raises(ValueError, match=f"{variable} must be a number, got {raw!r}"):
        Settings.from_env({variable: raw})


@pytest.mark.parametrize(("variable", "attribute"), FLOATS)
@pytest.mark.parametrize("raw", ["0", "-1", "-0.01", "0.0"])
def test_float_that_is_not_positive_is_refused_naming_the_variable(
    variable: str, attribute: str, raw: str
) -> None:
    with pytest.raises(ValueError, match=f"{variable} must be positive"):
        Settings.from_env({variable: raw})


@pytest.mark.parametrize(("variable", "attribute"), FLOATS)
@pytest.mark.parametrize("raw", ["nan", "inf"])
def test_float_that_is_not_finite_is_refused_naming_the_variable(
    variable: str, attribute: str, raw: str
) -> None:
    with pytest.raises(ValueError, match=variable):
        Settings.from_env({variable: raw})


# --- derived values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("brokers", "servers"),
    [
        (DEFAULT_BROKERS, ["127.0.0.1:11092", "127.0.0.1:12092", "127.0.0.1:13092"]),
        ("kafka:9092", ["kafka:9092"]),
        (" a:1 , b:2 ,", ["a:1", "b:2"]),
        ("a:1,,b:2", ["a:1", "b:2"]),
    ],
)
def test_bootstrap_servers_is_the_trimmed_list_of_brokers(brokers: str, servers: list[str]) -> None:
    assert Settings(kafka_brokers=brokers).bootstrap_servers == servers


@pytest.mark.parametrize(
    ("brokers", "url"),
    [
        (DEFAULT_BROKERS, "kafka://127.0.0.1:11092;127.0.0.1:12092;127.0.0.1:13092"),
        ("kafka:9092", "kafka://kafka:9092"),
        (" a:1 , b:2 ", "kafka://a:1;b:2"),
    ],
)
def test_faust_broker_url_joins_the_brokers_with_semicolons(brokers: str, url: str) -> None:
    assert Settings(kafka_brokers=brokers).faust_broker_url == url


@pytest.mark.parametrize(
    ("role", "app_id", "service_name"),
    [
        ("client", "operation-response-group", "client-application"),
        ("server", "operation-request-group", "server-application"),
    ],
)
def test_role_decides_the_app_id_and_the_service_name(
    role: str, app_id: str, service_name: str
) -> None:
    # Given a worker of a role
    settings = Settings.from_env({"JOBSTREAM_ROLE": role})

    # Then its Faust app id (the consumer group) and its tracing service name follow the role
    assert settings.app_id == app_id
    assert settings.service_name == service_name


def test_app_id_follows_overridden_group_names() -> None:
    env = {"JOBSTREAM_CLIENT_GROUP": "c", "JOBSTREAM_SERVER_GROUP": "s"}
    assert Settings.from_env(env).app_id == "c"
    assert Settings.from_env({**env, "JOBSTREAM_ROLE": "server"}).app_id == "s"


# --- API tokens ---------------------------------------------------------------------------------

TOKEN = "s3cret-token-0123456789"
OTHER = "QmFzZTY0LXRva2VuLWZvci10ZXN0cw=="


@pytest.mark.parametrize(
    ("raw", "tokens"),
    [
        (TOKEN, (TOKEN,)),
        (f"{TOKEN},{OTHER}", (TOKEN, OTHER)),
        (f" {TOKEN} , {OTHER} ", (TOKEN, OTHER)),
        ("a" * 16, ("a" * 16,)),
        ("Az09._~+/-Az09._~+/-==", ("Az09._~+/-Az09._~+/-==",)),
    ],
    ids=["one", "two", "spaces-around", "shortest", "every-character-class"],
)
def test_api_tokens_are_read_comma_separated(raw: str, tokens: tuple[str, ...]) -> None:
    assert Settings.from_env({"JOBSTREAM_API_TOKENS": raw}).api_tokens == tokens


@pytest.mark.parametrize("raw", ["", "   "])
def test_no_api_tokens_leave_the_api_open(raw: str) -> None:
    assert Settings.from_env({"JOBSTREAM_API_TOKENS": raw}).api_tokens == ()


@pytest.mark.parametrize(
    ("raw", "position", "count"),
    [
        ("short", 1, 1),
        (f"{TOKEN},", 2, 2),
        (f"{TOKEN},,{OTHER}", 2, 3),
        (f"{TOKEN},has space inside-0123", 2, 2),
        ("tok\u00e9n-with-an-accent-01", 1, 1),
        ("x" * 513, 1, 1),
        ("=" + "a" * 16, 1, 1),
        ('quote"d-token-0123456789', 1, 1),
    ],
    ids=["too-short", "empty-last", "empty-middle", "space", "non-ascii", "too-long",
         "padding-first", "quote"],
)  # fmt: skip
def test_malformed_api_token_is_refused_by_position_without_echoing_it(
    raw: str, position: int, count: int
) -> None:
    # Given a token that is not a bearer token (or too short to be a secret)
    with pytest.raises(ValueError) as caught:
        Settings.from_env({"JOBSTREAM_API_TOKENS": raw})

    # Then the variable and the token's position are named, and no token is quoted back
    message = str(caught.value)
    assert message.startswith(f"JOBSTREAM_API_TOKENS: token {position} of {count} must be")
    for token in raw.split(","):
        assert not token.strip() or token.strip() not in message


def test_api_tokens_stay_out_of_the_settings_repr() -> None:
    settings = Settings.from_env({"JOBSTREAM_API_TOKENS": TOKEN})
    assert TOKEN not in repr(settings)
    assert "api_tokens" not in repr(settings)
