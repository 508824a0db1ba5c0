"""Deploy infra/stack.yaml as a CloudFormation stack, on AWS or on the emulator.

Parameters come from the pipeline's environment (PARAMETERS below) and are checked against the
template's own constraints before anything is created. The stack is created or updated, waited
for, and its outputs returned; a failed deployment is reported by its failing resources.
"""

import contextlib
import copy
import functools
import ipaddress
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.exceptions import ClientError, WaiterError

from stock_pipeline.settings import get_settings

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).resolve().parents[1] / "infra" / "stack.yaml"

# Template parameter -> the environment variable (setting) that sets it.
PARAMETERS = {
    "StreamName": "TICKS_STREAM",
    "StreamShardCount": "TICKS_STREAM_SHARDS",
    "StreamRetentionHours": "TICKS_STREAM_RETENTION_HOURS",
    "LakeBucketName": "LAKE_BUCKET",
    "LakePrefix": "LAKE_PREFIX",
    "QuarantineExpirationDays": "QUARANTINE_EXPIRATION_DAYS",
    "AlertsTopicName": "ALERTS_TOPIC",
    "AlertsQueueName": "ALERTS_QUEUE",
    "AlertEmail": "ALERT_EMAIL",
    "MetricsNamespace": "METRICS_NAMESPACE",
    "FreshnessMaxAgeSeconds": "LATEST_QUOTES_MAX_AGE_MINUTES",
}

# moto's CloudFormation creates every other type in the template. It skips these (it has no
# CloudFormation model for them), so on the emulator provision creates them itself from the same
# template properties (EmulatorResources). AWS::S3::BucketPolicy it skips too, and so do we: its
# one statement denies plain HTTP, which is all the emulator speaks.
EMULATOR_DIRECT_TYPES = (
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::Subscription",
    "AWS::Glue::Database",
    "AWS::Glue::Table",
    "AWS::Athena::WorkGroup",
    "AWS::CloudWatch::Alarm",
)

FAILED = re.compile(r"_FAILED$")


class ProvisionError(Exception):
    """A deployment that cannot start or did not complete; the message says why."""


class _TemplateLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML with CloudFormation's short forms (!Ref, !Sub, ...) as their long forms."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return copy.deepcopy(_parsed(path, path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=4)
def _parsed(path: Path, _mtime_ns: int) -> dict[str, Any]:
    # Tests provision hundreds of times: parse once per version of the file.
    return yaml.load(path.read_text(), Loader=_TemplateLoader)  # noqa: S506 - a SafeLoader


def parameters_from_settings(shard_count: int | None = None) -> dict[str, str]:
    """The template parameters from the settings (and `shard_count`, when given)."""
    settings = get_settings()
    environment = settings.environment()
    values = {parameter: environment[variable] for parameter, variable in PARAMETERS.items()}
    # The code strips the prefix's slashes; the template wants one at the end.
    prefix = settings.lake_prefix.strip("/")
    values["LakePrefix"] = prefix + "/" if prefix else ""
    values["FreshnessMaxAgeSeconds"] = str(int(settings.latest_quotes_max_age_minutes * 60))
    if shard_count is not None:
        values["StreamShardCount"] = str(shard_count)
    return values


def _number(value: str, parameter: str, variable: str | None) -> str:
    try:
        float(value)
    except ValueError:
        raise ProvisionError(_invalid(parameter, variable, value, "not a number")) from None
    return value


def _invalid(parameter: str, variable: str | None, value: str, why: str) -> str:
    source = f" (from {variable})" if variable else ""
    return f"invalid parameter {parameter}{source}: {value!r}: {why}"


def validate_parameters(template: dict[str, Any], values: dict[str, str]) -> None:
    """Raise ProvisionError naming the first parameter the template (or S3) would reject."""
    declared = template["Parameters"]
    for name, value in values.items():
        variable = PARAMETERS.get(name)
        if name not in declared:
            raise ProvisionError(f"unknown parameter {name}; the template has {sorted(declared)}")
        spec = declared[name]
        why = spec.get("ConstraintDescription")
        if spec["Type"] == "Number":
            number = float(_number(value, name, variable))
            low, high = spec.get("MinValue"), spec.get("MaxValue")
            if low is not None and number < low:
                raise ProvisionError(_invalid(name, variable, value, f"must be at least {low}"))
            if high is not None and number > high:
                raise ProvisionError(_invalid(name, variable, value, f"must be at most {high}"))
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            raise ProvisionError(
                _invalid(name, variable, value, why or f"must match {spec['AllowedPattern']}")
            )
        if "AllowedValues" in spec and value not in map(str, spec["AllowedValues"]):
            raise ProvisionError(_invalid(name, variable, value, f"one of {spec['AllowedValues']}"))
    bucket = values.get("LakeBucketName")
    if bucket:
        try:
            ipaddress.ip_address(bucket)
        except ValueError:
            pass
        else:
            raise ProvisionError(
                _invalid("LakeBucketName", "LAKE_BUCKET", bucket, "S3 rejects IP-address names")
            )


@dataclass
class Stack:
    cfn: Any
    name: str

    def status(self) -> str | None:
        try:
            (stack,) = self.cfn.describe_stacks(StackName=self.name)["Stacks"]
        except ClientError as err:
            if "does not exist" in str(err):
                return None
            raise
        return stack["StackStatus"]

    def outputs(self) -> dict[str, str]:
        (stack,) = self.cfn.describe_stacks(StackName=self.name)["Stacks"]
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    def failures(self, token: str) -> list[str]:
        """`Logical id (type): reason` of each resource that failed in the operation `token`."""
        failed = []
        for page in self.cfn.get_paginator("describe_stack_events").paginate(StackName=self.name):
            for event in page["StackEvents"]:
                if event.get("ClientRequestToken") not in (token, None):
                    continue
                if event["LogicalResourceId"] == self.name:  # the stack's own events
                    continue
                if FAILED.search(event["ResourceStatus"]):
                    failed.append(
                        f"{event['LogicalResourceId']} ({event['ResourceType']}): "
                        f"{event.get('ResourceStatusReason', 'no reason given')}"
                    )
        return list(reversed(failed))  # events come newest first; the first failure is the cause

    def missing(self, template: dict[str, Any]) -> list[str]:
        """Template resources the stack does not have (moto records no failure events)."""
        have = {
            r.get("LogicalResourceId")
            for r in self.cfn.describe_stack_resources(StackName=self.name)["StackResources"]
        }
        return [
            f"{logical_id} ({resource['Type']}): not created"
            for logical_id, resource in template["Resources"].items()
            if logical_id not in have
            and resource["Type"] not in EMULATOR_DIRECT_TYPES + ("AWS::S3::BucketPolicy",)
            and "Condition" not in resource
        ]


def deploy(
    cfn: Any,
    stack_name: str,
    template_body: str,
    parameters: dict[str, str],
    wait: bool = True,
    poll: tuple[int, int] = (5, 360),
) -> str:
    """Create or update the stack and wait for it: 'create', 'update' or 'none' (no change)."""
    stack = Stack(cfn, stack_name)
    status = stack.status()
    if status == "ROLLBACK_COMPLETE":  # a failed first create leaves a stack that cannot update
        log.info("deleting stack %s left by a failed create", stack_name)
        cfn.delete_stack(StackName=stack_name)
        cfn.get_waiter("stack_delete_complete").wait(StackName=stack_name)
        status = None
    token = f"provision-{uuid.uuid4()}"
    request = {
        "StackName": stack_name,
        "TemplateBody": template_body,
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        "Capabilities": ["CAPABILITY_IAM"],
        "ClientRequestToken": token,
    }
    operation = "create" if status is None else "update"
    try:
        if operation == "create":
            cfn.create_stack(**request)
        else:
            cfn.update_stack(**request)
    except ClientError as err:
        if "No updates are to be performed" in str(err):
            return "none"
        if operation == "create" and err.response["Error"]["Code"] == "AlreadyExistsException":
            # Another provision created it meanwhile (`local-aws` provisions as it starts, beside
            # `stock-pipeline dev`): once that one is done, this becomes an update.
            delay, attempts = poll
            cfn.get_waiter("stack_create_complete").wait(
                StackName=stack_name, WaiterConfig={"Delay": delay, "MaxAttempts": attempts}
            )
            return deploy(cfn, stack_name, template_body, parameters, wait, poll)
        # AWS refuses a bad request here; moto fails here when creating a resource fails (and
        # then cannot describe the half-made stack, so the error's own words are all there is).
        raise ProvisionError(f"stack {stack_name} {operation} failed: {err}") from None
    if wait:
        try:
            delay, attempts = poll
            cfn.get_waiter(f"stack_{operation}_complete").wait(
                StackName=stack_name, WaiterConfig={"Delay": delay, "MaxAttempts": attempts}
            )
        except WaiterError as err:
            reasons = stack.failures(token) or stack.missing(load_template()) or [str(err)]
            raise ProvisionError(
                f"stack {stack_name} {operation} failed ({stack.status()}):\n  "
                + "\n  ".join(reasons)
            ) from None
    return operation


class EmulatorResources:
    """Creates, on the emulator, the template's resources of EMULATOR_DIRECT_TYPES.

    Their properties are resolved against the deployed stack: parameters, pseudo parameters,
    and the physical ids moto gave the resources they reference.
    """

    def __init__(self, session: Any, stack_name: str, template: dict[str, Any], parameters):
        self.session = session
        self.stack_name = stack_name
        self.template = template
        cfn = session.client("cloudformation")
        (stack,) = cfn.describe_stacks(StackName=stack_name)["Stacks"]
        _, _, _, region, account, _ = stack["StackId"].split(":", 5)
        self.values = {
            **{k: v.get("Default", "") for k, v in template["Parameters"].items()},
            **parameters,
            "AWS::AccountId": account,
            "AWS::Region": region,
            "AWS::Partition": "aws",
            "AWS::StackName": stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.physical = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
            if "LogicalResourceId" in r  # moto lists the resources it skipped without one
        }

    def _condition(self, name: str | None) -> bool:
        if name is None:
            return True
        return bool(self.resolve(self.template["Conditions"][name]))

    def _get_att(self, logical_id: str, attribute: str) -> str:
        kind = self.template["Resources"][logical_id]["Type"]
        physical = self.physical[logical_id]
        if (kind, attribute) == ("AWS::S3::Bucket", "Arn"):
            return f"arn:aws:s3:::{physical}"
        if (kind, attribute) == ("AWS::SQS::Queue", "Arn"):  # from its URL: .../<account>/<name>
            account, name = physical.rstrip("/").split("/")[-2:]
            return f"arn:aws:sqs:{self.values['AWS::Region']}:{account}:{name}"
        raise ProvisionError(f"provision cannot resolve {logical_id}.{attribute} on the emulator")

    def resolve(self, value: Any) -> Any:
        """`value` with its intrinsic functions evaluated (those the template uses)."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not next(iter(value)).startswith(("Ref", "Fn::")):
            return {k: self.resolve(v) for k, v in value.items()}
        ((function, argument),) = value.items()
        if function == "Ref":
            return self.values[argument] if argument in self.values else self.physical[argument]
        if function == "Fn::GetAtt":
            return self._get_att(*argument)
        if function == "Fn::Sub":
            return re.sub(r"\$\{([^}]+)\}", self._substitute, argument)
        if function == "Fn::Equals":
            left, right = self.resolve(argument)
            return left == right
        if function == "Fn::Not":
            return not self.resolve(argument[0])
        if function == "Fn::Join":
            separator, items = argument
            return separator.join(self.resolve(items))
        raise ProvisionError(f"provision cannot evaluate {function} on the emulator")

    def _substitute(self, match: re.Match) -> str:
        name = match.group(1)
        if name.startswith("!"):  # ${!literal} stays as ${literal}
            return "${" + name[1:] + "}"
        if "." in name and not name.startswith("AWS::"):
            return self._get_att(*name.split(".", 1))
        return str(self.resolve({"Ref": name}))

    def create(self) -> list[str]:
        """Create (or bring up to date) each such resource; their logical ids."""
        created = []
        for logical_id, resource in self.template["Resources"].items():
            if resource["Type"] not in EMULATOR_DIRECT_TYPES:
                continue
            if logical_id in self.physical or not self._condition(resource.get("Condition")):
                continue
            properties = self.resolve(resource.get("Properties", {}))
            handler = getattr(self, "_" + resource["Type"].split("::", 1)[1].replace("::", "_"))
            # Later resources may !Ref this one: its Ref value is what the handler returns.
            self.physical[logical_id] = handler(logical_id, properties)
            created.append(logical_id)
        return created

    def _SQS_QueuePolicy(self, logical_id: str, props: dict) -> str:
        sqs = self.session.client("sqs")
        for queue_url in props["Queues"]:
            sqs.set_queue_attributes(
                QueueUrl=queue_url, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
            )
        return logical_id

    def _SNS_Subscription(self, _: str, props: dict) -> str:
        sns = self.session.client("sns")
        existing = sns.list_subscriptions_by_topic(TopicArn=props["TopicArn"])["Subscriptions"]
        for subscription in existing:
            if subscription["Endpoint"] == props["Endpoint"]:
                return subscription["SubscriptionArn"]
        attributes = {k: json.dumps(props[k]) for k in ("RedrivePolicy",) if k in props}
        return sns.subscribe(
            TopicArn=props["TopicArn"],
            Protocol=props["Protocol"],
            Endpoint=props["Endpoint"],
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]

    def _Glue_Database(self, _: str, props: dict) -> str:
        glue, database = self.session.client("glue"), props["DatabaseInput"]
        try:
            glue.create_database(DatabaseInput=database)
        except glue.exceptions.AlreadyExistsException:
            glue.update_database(Name=database["Name"], DatabaseInput=database)
        return database["Name"]

    def _Glue_Table(self, _: str, props: dict) -> str:
        glue = self.session.client("glue")
        try:
            glue.create_table(DatabaseName=props["DatabaseName"], TableInput=props["TableInput"])
        except glue.exceptions.AlreadyExistsException:
            glue.update_table(DatabaseName=props["DatabaseName"], TableInput=props["TableInput"])
        return props["TableInput"]["Name"]

    def _Athena_WorkGroup(self, _: str, props: dict) -> str:
        athena = self.session.client("athena")
        # It may exist already; moto cannot update a workgroup's configuration.
        with contextlib.suppress(athena.exceptions.InvalidRequestException):
            athena.create_work_group(
                Name=props["Name"],
                Description=props["Description"],
                Configuration=props["WorkGroupConfiguration"],
            )
        return props["Name"]

    def _CloudWatch_Alarm(self, logical_id: str, props: dict) -> str:
        # Parameters resolve to strings; the API wants numbers where CloudFormation converts.
        numbers = {"Threshold": float, "Period": int, "EvaluationPeriods": int}
        numbers["DatapointsToAlarm"] = int
        props = {k: numbers[k](v) if k in numbers else v for k, v in props.items()}
        name = f"{self.stack_name}-{logical_id}"
        self.session.client("cloudwatch").put_metric_alarm(AlarmName=name, **props)
        return name


@functools.lru_cache(maxsize=8)
def _session(*environment: str | None) -> boto3.session.Session:
    """One session per environment: a new one reloads botocore's service models, which is most
    of what provisioning the emulator costs (and tests provision it hundreds of times)."""
    session = boto3.session.Session()
    if session.region_name is None:
        session = boto3.session.Session(region_name=get_settings().aws_default_region)
    return session


def on_emulator() -> bool:
    return get_settings().aws_endpoint_url is not None


def provision(shard_count: int | None = None, wait: bool = True) -> dict[str, str]:
    """Deploy the stack from the environment's settings; its outputs."""
    started = time.monotonic()
    template_body = TEMPLATE.read_text()
    template = load_template()
    parameters = parameters_from_settings(shard_count)
    validate_parameters(template, parameters)
    settings = get_settings()
    session = _session(
        settings.aws_endpoint_url,
        settings.aws_profile,
        settings.aws_access_key_id,
        os.environ.get("AWS_SESSION_TOKEN"),  # boto3's own, from a credential process or SSO
        settings.aws_default_region,
    )
    stack_name = settings.stack_name
    # moto deploys within the call, or never: no point waiting minutes for it.
    poll = (1, 5) if on_emulator() else (5, 360)
    operation = deploy(
        session.client("cloudformation"), stack_name, template_body, parameters, wait, poll
    )
    if on_emulator():
        EmulatorResources(session, stack_name, template, parameters).create()
    log.info(
        "stack %s: %s in %.1fs", stack_name, operation or "no change", time.monotonic() - started
    )
    return Stack(session.client("cloudformation"), stack_name).outputs()
