"""An AWX job launch, replayed: survey rules, extra vars, credentials and the job's own folder.

Each rule follows AWX's source at tag 24.6.1 (github:ansible/awx); file and
lines are cited where the rule is applied:

- The survey spec as AWX accepts it when a job template saves it:
  awx/api/views/__init__.py:2559-2704 (JobTemplateSurveySpec._validate_spec_data),
  with awx/main/constants.py:99 (SURVEY_TYPE_MAPPING).
- What the UI posts: the form starts from each question's default
  (awx/ui/src/components/LaunchPrompt/steps/useSurveyStep.js:62-83; a
  password's default shows as $encrypted$, awx/main/models/mixins.py:378-387),
  number inputs are parsed as numbers (SurveyStep.js:73-92, type="number"),
  blank answers are dropped (awx/ui/src/util/prompt/getSurveyValues.js:1-15)
  and the rest merged over the template's extra vars
  (awx/ui/src/components/LaunchPrompt/LaunchPrompt.js:60-63,
  awx/ui/src/util/prompt/mergeExtraVars.js:3-13). An API launch posts its JSON as it is.
- The launch's checks: awx/api/serializers.py:4706-4708 (JobLaunchSerializer.validate,
  'prompts' errors non-blocking), awx/main/models/jobs.py:432-443 and
  awx/main/models/mixins.py:298-353 (_accept_or_ignore_variables), each answer
  checked by mixins.py:205-296 (_survey_element_validation: required, string
  or integer or float type, min/max, choices; $encrypted$ for passwords).
- The job's extra vars: awx/main/utils/common.py:521-522 calls
  mixins.py:154-203 (_update_unified_job_kwargs): the template's extra vars,
  then every question's default that passes validation (answered or not),
  then the launch's answers, a password's $encrypted$ meaning its default.
  Then awx/main/tasks/jobs.py:1025-1042 adds awx_meta_vars
  (awx/main/models/unified_jobs.py:1554-1598) and writes env/extravars with
  awx/main/utils/safe_yaml.py:27-65 (values not from the template as !unsafe;
  ALLOW_JINJA_IN_EXTRA_VARS = 'template', awx/settings/defaults.py:623).
- The job's private data dir: awx/main/tasks/jobs.py:209-222 (mkdtemp
  awx_<id>_ in AWX_ISOLATION_BASE_PATH, 0700, inventory/ and env/; removed
  after the job, jobs.py:90-104), the project checkout in project/ (jobs.py:1369-1371),
  the inventory as a script (jobs.py:315-322), the environment (jobs.py:882-948:
  ANSIBLE_SSH_CONTROL_PATH_DIR in the job's cp/, collections paths with the
  project's ansible.cfg, JOB_ID...), env/cmdline (jobs.py:335-336), envvars
  passed in memory (AWX_RUNNER_OMIT_ENV_FILES, awx/settings/defaults.py:999).
- Credentials: the VMware vCenter credential's VMWARE_* variables
  (awx/main/models/credential/injectors.py:68-72, VMWARE_VALIDATE_CERTS from
  awx/settings/defaults.py:720, False; the type has host, username and
  password only, no CA: __init__.py, ManagedCredentialType 'vmware'), and a
  custom type's injectors (awx/main/models/credential/__init__.py:442-570):
  a private key gets a final newline, each `file` template is rendered in a
  sandbox into env/tmpXXXX (0600) and named by tower.filename (a label
  `template.<name>` by tower.filename.<name>), `env` templates are rendered
  the same way into the job's environment, extra_vars injectors go into
  another file in env/ (0400) passed as `-e @file`. The project's types are
  awx/credential_types/*.yml: vcenter_verified.yml (vCenter with its CA, the
  check on) and ray_cluster_key.yml.

In the execution environment the job's folder is /runner and HOME, and the
job runs as uid 1000, which the image's entrypoint enters into /etc/passwd
with /runner as its home (ansible-builder's entrypoint). Here the folder
itself is the job's /runner (no container), and the job runs as an
unprivileged user that owns nothing outside its folder: a free uid from
1000 up, entered with the folder as its home into a copy of /etc/passwd that
is bind-mounted in a mount namespace of the job's own. Its Python is the
system's (an execution environment's is in /usr too) with the project's
packages: the project's virtualenv may be built on an interpreter in root's
home, which no other user can run (see job_python).
"""

import copy
import itertools
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import jinja2.sandbox
import yaml
from ansible_runner.utils import args2cmdline

from testbed import PROJECT_ROOT

# awx/main/constants.py:99
SURVEY_TYPE_MAPPING = {"text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": str,
                       "integer": int, "float": (float, int)}
ENCRYPTED = "$encrypted$"
JOB_USER = "awx-job"
_job_ids = itertools.count(1000)


class SurveySpecError(ValueError):
    """AWX would refuse to save this survey spec (HTTP 400)."""


class LaunchError(ValueError):
    """AWX would refuse this launch (HTTP 400, variables_needed_to_start)."""


def load_survey(template):
    return json.loads((PROJECT_ROOT / "awx" / "surveys" / f"{template}.json").read_text())


def validate_spec(spec):
    """The checks of awx/api/views/__init__.py:2559-2704 (JobTemplateSurveySpec._validate_spec_data)."""
    for name, expected in (("name", str), ("description", str), ("spec", list)):  # 2561-2565
        if not isinstance(spec.get(name), expected):
            raise SurveySpecError(f"Field '{name}' is missing from survey spec or not a {expected.__name__}")
    if not spec["spec"]:  # 2567-2568
        raise SurveySpecError("'spec' doesn't contain any items.")
    variables = set()
    for index, item in enumerate(spec["spec"]):
        for name, expected in (("type", str), ("question_name", str), ("variable", str), ("required", bool)):  # 2580-2600
            if not isinstance(item.get(name), expected):
                raise SurveySpecError(f"'{name}' missing from survey question {index} or not a {expected.__name__}")
        if item["variable"] in variables:  # 2601-2605
            raise SurveySpecError(f"'variable' '{item['variable']}' duplicated in survey question {index}.")
        variables.add(item["variable"])
        if item["type"] not in SURVEY_TYPE_MAPPING:  # 2612-2620
            raise SurveySpecError(f"'{item['type']}' in survey question {index} is not an allowed question type.")
        if "default" in item and item["default"] != "" and not isinstance(item["default"], SURVEY_TYPE_MAPPING[item["type"]]):
            raise SurveySpecError(f"Default value {item['default']} in survey question {index} has the wrong type.")  # 2621-2633
        for limit in ("min", "max"):  # 2636-2642
            if item.get(limit) is not None and not isinstance(item[limit], int):
                raise SurveySpecError(f"The {limit} limit in survey question {index} expected to be integer.")
        if item["type"] in ("multiselect", "multiplechoice"):  # 2645-2672
            if "choices" not in item:
                raise SurveySpecError(f"Survey question {index} of type {item['type']} must specify choices.")
            choices = _choices(item)
            defaults = item.get("default", "")
            defaults = [d for d in defaults.splitlines() if d.strip()] if isinstance(defaults, str) else defaults
            if item["type"] == "multiplechoice" and len(defaults) > 1:
                raise SurveySpecError("Multiple Choice (Single Select) can only have one default value.")
            if any(default not in choices for default in defaults):
                raise SurveySpecError("Default choice must be answered from the choices listed.")
        if isinstance(item.get("default"), str) and item["default"].startswith(ENCRYPTED) and item["type"] != "password":
            raise SurveySpecError(f"$encrypted$ is a reserved keyword for password question defaults ({index}).")  # 2675-2685
    return spec


def _choices(item):
    """Choices as a list; a string is one choice per non-blank line (mixins.py:283-285, 290-292)."""
    choices = copy.copy(item["choices"])
    if isinstance(choices, str):
        choices = [choice for choice in choices.splitlines() if choice.strip() != ""]
    return choices


def element_errors(item, data, validate_required=True):
    """awx/main/models/mixins.py:205-296 (_survey_element_validation), rule for rule."""
    variable, errors = item["variable"], []
    if item["type"] == "password":  # 210-216: the placeholder is not validated
        value = data.get(variable)
        if isinstance(value, str) and value == ENCRYPTED:
            if item.get("default") is None and item["required"] and validate_required:
                errors.append(f"'{variable}' value missing")
            return errors
    if variable not in data and item["required"]:  # 218-220
        if validate_required:
            errors.append(f"'{variable}' value missing")
    elif item["type"] in ("textarea", "text", "password"):  # 221-236
        if variable in data:
            value = data[variable]
            if not isinstance(value, str):
                return errors + [f"Value {value} for '{variable}' expected to be a string."]
            if item.get("min") not in ("", None) and len(value) < int(item["min"]):
                errors.append(f"'{variable}' value {value} is too small (length is {len(value)} must be at least {item['min']}).")
            if item.get("max") not in ("", None) and len(value) > int(item["max"]):
                errors.append(f"'{variable}' value {value} is too large (must be no more than {item['max']}).")
    elif item["type"] in ("integer", "float"):  # 238-277
        if variable in data:
            value = data[variable]
            wanted, convert = ((int,), int) if item["type"] == "integer" else ((float, int), float)
            if type(value) not in wanted:  # bool is not int here: type(), not isinstance()
                return errors + [f"Value {value} for '{variable}' expected to be {'an integer' if convert is int else 'a numeric type'}."]
            if item.get("min") not in ("", None) and value < convert(item["min"]):
                errors.append(f"'{variable}' value {value} is too small (must be at least {item['min']}).")
            if item.get("max") not in ("", None) and value > convert(item["max"]):
                errors.append(f"'{variable}' value {value} is too large (must be no more than {item['max']}).")
    elif item["type"] == "multiselect":  # 278-288
        if variable in data:
            if type(data[variable]) is not list:
                errors.append(f"'{variable}' value is expected to be a list.")
            else:
                errors.extend(f"Value {value} for '{variable}' expected to be one of {_choices(item)}."
                              for value in data[variable] if value not in _choices(item))
    elif item["type"] == "multiplechoice":  # 289-295
        if variable in data and data[variable] not in _choices(item):
            errors.append(f"Value {data[variable]} for '{variable}' expected to be one of {_choices(item)}.")
    return errors


def ui_post(spec, typed, template_extra_vars=None):
    """The extra_vars AWX's UI posts when a user launches with the survey form.

    typed: {variable: what the user typed or picked}, replacing the pre-filled
    default of that field; a text field the user cleared is "".
    """
    form = {}
    for item in spec["spec"]:  # useSurveyStep.js:62-83, defaults pre-filled
        default = item.get("default")
        if item["type"] == "password" and default:
            default = ENCRYPTED  # what GET survey_spec shows (mixins.py:378-387)
        if item["type"] == "multiselect":
            form[item["variable"]] = default.split("\n") if default else []
        else:
            form[item["variable"]] = "" if default is None else default
    for variable, value in typed.items():
        item = next(item for item in spec["spec"] if item["variable"] == variable)
        if item["type"] in ("integer", "float") and isinstance(value, str) and value != "":
            number = float(value)  # Formik parses <input type="number"> (SurveyStep.js:73-92)
            value = int(number) if number.is_integer() else number  # a whole JS number is a JSON integer
        form[variable] = value
    answers = {variable: value for variable, value in form.items()
               if value != "" and value != []}  # getSurveyValues.js:1-15
    return {**(template_extra_vars or {}), **answers}  # LaunchPrompt.js:60-63, mergeExtraVars.js:3-13


@dataclass
class JobTemplate:
    name: str
    playbook: str
    survey_spec: dict
    extra_vars: dict = field(default_factory=dict)
    survey_enabled: bool = True
    ask_variables_on_launch: bool = False


def launch_extra_vars(template, posted):
    """(the job's extra vars, the ignored ones) for a launch posting `posted` as extra_vars; LaunchError if refused."""
    posted = dict(posted)
    extra_vars, accepted, ignored, errors = dict(posted), {}, {}, []
    spec = template.survey_spec if template.survey_enabled else {"spec": []}
    for item in spec.get("spec", []):  # mixins.py:306-327
        problems = element_errors(item, posted)
        errors += problems
        if problems and item["variable"] in extra_vars:
            ignored[item["variable"]] = extra_vars.pop(item["variable"])
        elif item["variable"] in extra_vars:
            accepted[item["variable"]] = extra_vars.pop(item["variable"])
    if errors:
        raise LaunchError(errors)
    if template.ask_variables_on_launch:  # mixins.py:329-332
        accepted.update(extra_vars)
        extra_vars = {}
    for key in set(template.extra_vars) & set(extra_vars):  # mixins.py:334-339
        if template.extra_vars[key] == extra_vars[key]:
            extra_vars.pop(key)
    ignored.update(extra_vars)  # mixins.py:341-351; 'prompts' errors do not block a launch (serializers.py:4708)

    job_vars = dict(template.extra_vars)  # mixins.py:166-167
    defaults = {}
    for item in spec.get("spec", []):  # mixins.py:179-196
        variable, default = item["variable"], item.get("default")
        if item["type"] == "password" and accepted.get(variable) == ENCRYPTED:
            accepted.pop(variable)  # the placeholder means "keep the default"
        if default is not None and not element_errors(item, {variable: default}):
            defaults[variable] = default
    job_vars.update(defaults)  # 197: every valid default, answered or not
    job_vars.update(accepted)  # 201
    return job_vars, ignored


def _unsafe_yaml(values, trusted):
    """awx/main/utils/safe_yaml.py:27-65: every value not identical to the template's is !unsafe."""
    class UnsafeDumper(yaml.SafeDumper):
        def represent_data(self, data):
            if isinstance(data, str):
                return self.represent_scalar("!unsafe", data)
            return super().represent_data(data)
    return "".join(yaml.dump_all([{key: value}], None, default_flow_style=False,
                                 Dumper=yaml.SafeDumper if key in trusted and trusted[key] == value else UnsafeDumper)
                   for key, value in values.items())


@dataclass
class Credential:
    """A credential as AWX holds it: its type's injectors and its inputs."""
    name: str
    inputs: dict
    injectors: dict = None  # a custom type's; None for the VMware vCenter type
    secret_fields: tuple = ()
    key_fields: tuple = ()  # inputs of format ssh_private_key


CREDENTIAL_TYPES = PROJECT_ROOT / "awx" / "credential_types"


def vmware_credential(host, username, password):
    """AWX's own VMware vCenter credential: no CA field, certificate checks off."""
    return Credential("VMware vCenter", dict(host=host, username=username, password=password))


def verified_vcenter_credential(host, username, password, ca_pem):
    """A credential of the project's vCenter type (vcenter_verified.yml), with the CA pasted into its form."""
    return custom_credential("Ray vCenter", CREDENTIAL_TYPES / "vcenter_verified.yml",
                             dict(host=host, username=username, password=password, ca_pem=ca_pem))


def custom_credential(name, credential_type_file, inputs):
    """A credential of a type defined as code (awx/credential_types/*.yml)."""
    definition = yaml.safe_load(Path(credential_type_file).read_text())
    fields = definition["inputs"]["fields"]
    missing = [name for name in definition["inputs"].get("required", []) if not inputs.get(name)]
    assert not missing, f"AWX refuses a {definition['name']} credential without {missing}"
    return Credential(name, inputs, definition["injectors"],
                      tuple(f["id"] for f in fields if f.get("secret")),
                      tuple(f["id"] for f in fields if f.get("format") == "ssh_private_key"))


def inject(credential, env, args, private_data_dir):
    """Add what a credential gives a job to env and the ansible-playbook args."""
    if credential.injectors is None:  # awx/main/models/credential/injectors.py:68-72
        env["VMWARE_USER"] = credential.inputs.get("username", "")
        env["VMWARE_PASSWORD"] = credential.inputs.get("password", "")
        env["VMWARE_HOST"] = credential.inputs.get("host", "")
        env["VMWARE_VALIDATE_CERTS"] = str(False)  # settings.VMWARE_VALIDATE_CERTS, defaults.py:720
        return
    namespace = {name: value for name, value in credential.inputs.items() if value}  # __init__.py:489-503
    for name in credential.key_fields:  # 509-512
        if name in namespace and not namespace[name].endswith("\n"):
            namespace[name] += "\n"
    sandbox = jinja2.sandbox.ImmutableSandboxedEnvironment()
    tower = type("TowerNamespace", (), {})()
    namespace["tower"] = tower
    for label, template in credential.injectors.get("file", {}).items():  # 514-536
        _, path = tempfile.mkstemp(dir=os.path.join(private_data_dir, "env"))
        with open(path, "w") as handle:
            handle.write(sandbox.from_string(template).render(**namespace))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        if "." not in label:
            tower.filename = path
        else:
            if not hasattr(tower, "filename"):
                tower.filename = type("TowerNamespace", (), {})()
            setattr(tower.filename, label.split(".")[1], path)
    for name, template in credential.injectors.get("env", {}).items():  # 539-546
        env[name] = sandbox.from_string(template).render(**namespace)

    def render(node):  # 550-556
        if isinstance(node, dict):
            return {render(key): render(value) for key, value in node.items()}
        if isinstance(node, list):
            return [render(value) for value in node]
        return sandbox.from_string(node).render(**namespace)
    extra_vars = render(credential.injectors.get("extra_vars", {}))
    if extra_vars:  # 558-570
        handle, path = tempfile.mkstemp(dir=os.path.join(private_data_dir, "env"))
        with os.fdopen(handle, "w") as file:
            file.write(_unsafe_yaml(extra_vars, {}))
        os.chmod(path, stat.S_IRUSR)
        args.extend(["-e", f"@{path}"])


def synced_project(destination):
    """The project as AWX's project sync lays it out: the tracked files of the checkout."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    destination.mkdir()
    archive = subprocess.run(["tar", "-c", "--null", "-T", "-", "-f", "-"], cwd=PROJECT_ROOT, input=files,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-f", "-"], cwd=destination, input=archive, check=True)
    return destination


@dataclass
class Job:
    id: int
    status: str
    rc: int
    stdout: str
    events: list
    extra_vars: dict
    ignored_vars: dict
    injected_files: list
    private_data_dir: Path
    ran_as_uid: int  # the owner of the job's output, which the job's process wrote
    files: list  # what the job's folder held at its end, relative to it

    def stats(self):
        """What the play published with set_stats (AWX keeps it as the job's artifacts)."""
        for event in self.events:
            if event.get("event") == "playbook_on_stats":
                return event["event_data"].get("artifact_data") or {}
        return {}


# Run inside the job user's process: ansible-runner as AWX's receptor worker
# runs it, envvars in memory (suppress_env_files), the rest from the folder.
_RUNNER = """
import json, sys, ansible_runner
params = json.load(sys.stdin)
runner = ansible_runner.run(suppress_env_files=True, quiet=True, **params)
print(json.dumps({"status": runner.status, "rc": runner.rc}))
"""


def job_python(folder):
    """A virtualenv in `folder` that the job user can run: the system's Python with the project's packages.

    The project's .venv may be built on an interpreter under /root (pyenv),
    which no other user can reach; this one runs /usr/bin/python3.X of the
    same minor version and adds the .venv's site-packages (its .pth files
    included), with the .venv's scripts pointed at it. Returns its bin folder.
    """
    version = "python%d.%d" % sys.version_info[:2]
    system_python = Path("/usr/bin") / version
    if not system_python.exists():
        raise RuntimeError(f"AWX-style jobs need {system_python}, the system's {version} (Debian: {version}-minimal)")
    folder = Path(folder)
    subprocess.run([str(system_python), "-m", "venv", "--without-pip", str(folder)], check=True)
    project_packages = Path(sys.prefix) / "lib" / version / "site-packages"
    (folder / "lib" / version / "site-packages" / "project_venv.pth").write_text(
        f"import site; site.addsitedir({str(project_packages)!r})\n")
    bin_folder = folder / "bin"
    shebang = f"#!{Path(sys.prefix) / 'bin'}/"
    for script in (Path(sys.prefix) / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            text = script.read_text(errors="replace")
            if text.startswith(shebang + "python"):
                (bin_folder / script.name).write_text(f"#!{bin_folder / 'python3'}\n" + text.split("\n", 1)[1])
                (bin_folder / script.name).chmod(0o755)
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o755 if path.is_dir() else path.stat().st_mode | 0o644)
    return bin_folder


@dataclass
class JobUser:
    name: str
    uid: int
    gid: int


def job_user():
    """An unprivileged identity for jobs: the first uid from 1000 up that no user of this machine has."""
    taken = {entry.pw_uid for entry in pwd.getpwall()}
    uid = next(uid for uid in itertools.count(1000) if uid not in taken)
    return JobUser(JOB_USER, uid, pwd.getpwnam("nobody").pw_gid)


def launch(template, posted, *, credentials, python, inventory_vars=None, timeout=900):
    """Launch `template` as AWX does with `posted` as the launch's extra_vars; the finished Job.

    python: the bin folder of job_python().
    The job runs as JOB_USER in a fresh private data dir, removed when the job
    ends (its output is read first), like AWX's.
    """
    extra_vars, ignored = launch_extra_vars(template, posted)
    job_id = next(_job_ids)
    user = job_user()
    base = tempfile.gettempdir()  # AWX_ISOLATION_BASE_PATH (settings/defaults.py:652)
    private_data_dir = Path(tempfile.mkdtemp(prefix=f"awx_{job_id}_", dir=base))  # jobs.py:209-222
    try:
        private_data_dir.chmod(0o700)
        for folder in ("inventory", "env"):
            (private_data_dir / folder).mkdir()
        synced_project(private_data_dir / "project")
        meta = {f"{prefix}_{name}": value for prefix in ("awx", "tower")  # unified_jobs.py:1554-1598
                for name, value in (("job_id", job_id), ("job_launch_type", "manual"), ("inventory_name", "Ray clusters"),
                                    ("job_template_name", template.name))}
        (private_data_dir / "env" / "extravars").write_text(  # jobs.py:1025-1042
            _unsafe_yaml({**extra_vars, **meta}, template.extra_vars))
        inventory = {"all": {"vars": inventory_vars or {}}, "_meta": {"hostvars": {}}}
        hosts = private_data_dir / "inventory" / "hosts"  # jobs.py:315-322: a script printing the inventory
        hosts.write_text("#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint(%r)\n" % json.dumps(inventory))
        hosts.chmod(0o700)
        env = _job_environment(job_id, private_data_dir, python)
        args = []
        injected_before = set((private_data_dir / "env").iterdir())
        for credential in credentials:
            inject(credential, env, args, private_data_dir)
        injected = sorted(set((private_data_dir / "env").iterdir()) - injected_before)
        (private_data_dir / "env" / "cmdline").write_text(args2cmdline(*args))  # jobs.py:335-336
        for path in [private_data_dir, *private_data_dir.rglob("*")]:
            os.lchown(path, user.uid, user.gid)
        passwd = Path(f"{private_data_dir}.passwd")  # root's, outside the job's folder
        passwd.write_text(Path("/etc/passwd").read_text()
                          + f"{user.name}:x:{user.uid}:{user.gid}:AWX job:{private_data_dir}:/usr/sbin/nologin\n")
        params = dict(private_data_dir=str(private_data_dir), playbook=template.playbook, ident=str(job_id),
                      inventory=str(hosts), envvars=env, timeout=timeout)
        finished = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount --bind "$1" /etc/passwd && exec setpriv --reuid="$2" --regid="$3" --clear-groups "$4" -c "$5"',
             "sh", str(passwd), str(user.uid), str(user.gid), str(Path(python) / "python3"), _RUNNER],
            input=json.dumps(params), capture_output=True, text=True, timeout=timeout + 60,
            env={"PATH": env["PATH"], "HOME": str(private_data_dir), "USER": user.name, "LOGNAME": user.name,
                 "LANG": "C.UTF-8"})
        if finished.returncode != 0:
            raise RuntimeError(f"ansible-runner as {user.name} failed: {finished.stderr[-3000:]}")
        result = json.loads(finished.stdout.strip().splitlines()[-1])
        artifacts = private_data_dir / "artifacts" / str(job_id)
        events = [json.loads(path.read_text()) for path in sorted((artifacts / "job_events").glob("*.json"),
                                                                   key=lambda p: int(p.name.split("-")[0]))]
        stdout = (artifacts / "stdout").read_text() if (artifacts / "stdout").exists() else ""
        files = sorted(str(path.relative_to(private_data_dir)) for path in private_data_dir.rglob("*")
                       if "project" not in path.relative_to(private_data_dir).parts[:1])
        return Job(job_id, result["status"], result["rc"], stdout, events, extra_vars, ignored,
                   [path.name for path in injected], private_data_dir, (artifacts / "stdout").stat().st_uid, files)
    finally:
        shutil.rmtree(private_data_dir, ignore_errors=True)  # AWX_CLEANUP_PATHS (jobs.py:90-104, 215-216)
        Path(f"{private_data_dir}.passwd").unlink(missing_ok=True)


def _job_environment(job_id, private_data_dir, python):
    """awx/main/tasks/jobs.py:295-312 and 882-948, with the folder as the job's /runner and HOME."""
    cp = private_data_dir / "cp"
    cp.mkdir(mode=0o700)
    config = PROJECT_ROOT / "ansible.cfg"
    configured = [line.split("=", 1)[1].strip() for line in config.read_text().splitlines()
                  if line.replace(" ", "").startswith("collections_path=")]
    collections = [str(private_data_dir / "requirements_collections"), *configured,
                   "~/.ansible/collections", "/usr/share/ansible/collections"]
    return {
        "PATH": os.pathsep.join([str(python), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(private_data_dir),  # the execution environment's HOME is /runner
        "JOB_ID": str(job_id),
        "INVENTORY_ID": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp),
        "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join(collections),
        "AWX_PRIVATE_DATA_DIR": str(private_data_dir),
    }
