-- wrk script: POST the pre-made OSS callbacks of a file in turn.
-- Each line: path <TAB> authorization <TAB> x-oss-pub-key-url <TAB> body.
local requests = {}
local count = 0
local index = 0

function init(args)
  for line in io.lines(args[1]) do
    local path, auth, keyurl, body = line:match("([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)")
    count = count + 1
    requests[count] = wrk.format("POST", path, {
      ["Authorization"] = auth,
      ["x-oss-pub-key-url"] = keyurl,
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, body)
  end
  -- threads start at different places so they do not repeat each other
  index = math.random(count)
end

function request()
  index = index % count + 1
  return requests[index]
end
