{{- define "fleetweb.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "fleetweb.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fleetweb.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fleetweb.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "fleetweb.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "fleetweb.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{/* Every process's environment: plain settings, then the Secret's keys (never values). `migrate`: the owner URL too. */}}
{{- define "fleetweb.env" -}}
{{- $root := .root -}}
{{- range $name, $value := $root.Values.config }}
{{- if ne $name "FLEETWEB_ALLOWED_HOSTS" }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
# localhost too: the kubelet's probes ask for /healthz and /readyz with Host: localhost
- name: FLEETWEB_ALLOWED_HOSTS
  value: {{ printf "%s,localhost" (default "" $root.Values.config.FLEETWEB_ALLOWED_HOSTS) | trimPrefix "," | quote }}
- name: FLEETWEB_BEAT_LOCK_SECONDS
  value: {{ $root.Values.beat.lockSeconds | toString | quote }}
- name: PROMETHEUS_MULTIPROC_DIR
  value: /run/fleetweb-metrics
{{- if and $root.Values.gateway.enabled $root.Values.ingress.enabled (not (hasKey $root.Values.config "FLEETWEB_AGENT_URL")) }}
- name: FLEETWEB_AGENT_URL
  value: {{ printf "https://%s" (default $root.Values.ingress.host $root.Values.ingress.agentsHost) | quote }}
{{- end }}
{{- $keys := $root.Values.secrets.keys }}
{{- range $env, $key := dict "DATABASE_URL" $keys.databaseUrl "REDIS_URL" $keys.redisUrl "FLEETWEB_SECRET_KEY" $keys.secretKey "FLEETWEB_ENCRYPTION_KEYS" $keys.encryptionKeys }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef: {name: {{ $root.Values.secrets.name | quote }}, key: {{ $key | quote }}}
{{- end }}
{{- if .migrate }}
- name: FLEETWEB_MIGRATE_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ $root.Values.secrets.name | quote }}, key: {{ $keys.migrateDatabaseUrl | quote }}}
{{- end }}
{{- range $root.Values.secrets.optionalKeys }}
- name: {{ . }}
  valueFrom:
    secretKeyRef: {name: {{ $root.Values.secrets.name | quote }}, key: {{ . | quote }}, optional: true}
{{- end }}
{{- end -}}

{{/* The pod spec every Fleetweb process shares; `command`, `ports`, `probes`, `resources` vary. */}}
{{- define "fleetweb.pod" -}}
{{- $root := .root -}}
serviceAccountName: {{ .serviceAccount | default (include "fleetweb.serviceAccountName" $root) }}
automountServiceAccountToken: false
securityContext: {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .restartPolicy }}
restartPolicy: {{ . }}
{{- end }}
containers:
  - name: {{ .name }}
    image: {{ include "fleetweb.image" $root | quote }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command: {{- toYaml .command | nindent 6 }}
    env: {{- include "fleetweb.env" (dict "root" $root "migrate" .migrate) | nindent 6 }}
      {{- with .env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    securityContext: {{- toYaml $root.Values.securityContext | nindent 6 }}
    resources: {{- toYaml .resources | nindent 6 }}
    {{- with .ports }}
    ports: {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .probes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      - {name: metrics, mountPath: /run/fleetweb-metrics}
volumes:
  - {name: tmp, emptyDir: {}}
  - {name: metrics, emptyDir: {medium: Memory}}
{{- end -}}

{{/* What every Fleetweb pod may reach: DNS, the database, Redis. */}}
{{- define "fleetweb.egress" -}}
{{- $np := .Values.networkPolicy }}
- ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]  # DNS
- to: [{{- range $np.database.cidrs }}{ipBlock: {cidr: {{ . }}}}, {{ end }}]
  ports: [{protocol: TCP, port: {{ $np.database.port }}}]
- to: [{{- range $np.redis.cidrs }}{ipBlock: {cidr: {{ . }}}}, {{ end }}]
  ports: [{protocol: TCP, port: {{ $np.redis.port }}}]
{{- end -}}
