-- Argo CD health check for fhirlock.io/SecuredFhirEndpoint (docs/install.md explains it).
--
--   Healthy      Ready=True for the latest generation: Azure matches the spec, no finding remains
--   Progressing  no status yet (or only the CRD's default), status for an older generation,
--                Reconciling=True, or not Ready yet
--   Degraded     Stalled=True (fhirlock cannot go on without a change; the message says which),
--                or findings remain in Enforce mode after fhirlock stopped reconciling
--   Suspended    Audit mode and not Ready (findings, or planned changes): fhirlock reports them
--                and, by design, changes nothing
--
-- Argo CD runs customizations from argocd-cm without Lua's string and os libraries, so this uses
-- only the base and table libraries. Tested with gopher-lua by tests/deploy.rs and
-- hack/gitops-check (health_test.yaml beside this file, Argo CD's fixture format).
local hs = {}

local function condition(ctype)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function message(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

-- The CRD defaults status to {observedGeneration: -1} until fhirlock writes one (docs/api.md), so a
-- negative generation, like none at all, means fhirlock has not looked at the endpoint yet.
if obj.status == nil or obj.status.observedGeneration == nil or obj.status.observedGeneration < 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for fhirlock to observe the endpoint"
  return hs
end

if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for fhirlock to observe generation " .. tostring(obj.metadata.generation)
    .. " (status is for generation " .. tostring(obj.status.observedGeneration) .. ")"
  return hs
end

local stalled = condition("Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = message(stalled, "Stalled")
  return hs
end

local reconciling = condition("Reconciling")
if is_true(reconciling) then
  hs.status = "Progressing"
  hs.message = message(reconciling, "Reconciling")
  return hs
end

local ready = condition("Ready")
if is_true(ready) then
  hs.status = "Healthy"
  hs.message = message(ready, "Secured")
  return hs
end

local findings = obj.status.findingCount
if findings == nil then
  findings = 0
end
local mode = "Enforce"
if obj.spec ~= nil and obj.spec.mode ~= nil then
  mode = obj.spec.mode
end
-- Audit mode never writes to Azure, so an Audit endpoint that is not Ready stays so until someone
-- changes Azure or the spec: waiting on people, not progressing.
if mode == "Audit" and (ready ~= nil or findings > 0) then
  hs.status = "Suspended"
  hs.message = message(ready, "Audit mode: " .. tostring(findings) .. " finding(s)")
  return hs
end
if findings > 0 or (ready ~= nil and ready.reason == "FindingsPresent") then
  hs.status = "Degraded"
  hs.message = "Enforce mode: " .. message(ready, tostring(findings) .. " finding(s) remain")
  return hs
end

hs.status = "Progressing"
hs.message = message(ready, "Waiting for the endpoint to become Ready")
return hs
